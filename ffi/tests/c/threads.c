/*
 * threads.c: handles shared by threads.
 *
 * - Four writer threads overwrite their own sections through one checkpoint
 *   handle while a fifth thread runs saCkptDispatch(SA_DISPATCH_BLOCKING) on
 *   the library handle and receives the synchronize callbacks the writers
 *   ask for; every write and every callback arrives.
 * - saCkptFinalize from another thread makes the blocking dispatch return.
 * - Closing a checkpoint handle drops its queued callbacks: they never run.
 * - A checkpoint handle closed by one thread while others use it: their
 *   calls succeed or fail with BAD_HANDLE, nothing else.
 */
#include "check.h"

#include <pthread.h>

#include <saCkpt.h>

#define WRITERS 4
#define WRITES 2000

static SaCkptHandleT lib;
static SaCkptCheckpointHandleT ckpt;
static SaNameT name;
static volatile unsigned long callbacks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void sync_done(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	if (e == SA_AIS_OK) {
		pthread_mutex_lock(&lock);
		callbacks++;
		pthread_mutex_unlock(&lock);
	}
}

static void *dispatcher(void *arg)
{
	SaAisErrorT *rc = arg;

	*rc = saCkptDispatch(lib, SA_DISPATCH_BLOCKING);
	return NULL;
}

struct writer {
	int index;
	unsigned ok, failed;
};

static void *writer(void *arg)
{
	struct writer *w = arg;
	unsigned char id[2] = {'w', (unsigned char)('0' + w->index)};
	SaCkptSectionIdT sid = {2, id};
	unsigned i;

	for (i = 0; i < WRITES; i++) {
		unsigned v = i;
		SaAisErrorT e;
		int tries = 0;

		/* TRY_AGAIN (another thread held the checkpoint too long, or
		   the callback queue is full) asks the caller to retry. */
		while ((e = saCkptSectionOverwrite(ckpt, &sid, &v, sizeof v)) == SA_AIS_ERR_TRY_AGAIN &&
		       ++tries < 1000)
			ck_sleep_ms(1);
		if (e == SA_AIS_OK)
			while ((e = saCkptCheckpointSynchronizeAsync(ckpt, i)) == SA_AIS_ERR_TRY_AGAIN &&
			       ++tries < 1000)
				ck_sleep_ms(1);
		if (e == SA_AIS_OK) {
			w->ok++;
		} else {
			if (w->failed++ == 0)
				printf("writer %d at %u: %s\n", w->index, i, ck_err_name(e));
		}
	}
	return NULL;
}

struct racer {
	SaCkptCheckpointHandleT h;
	unsigned ok, bad_handle, other;
};

static void *racer(void *arg)
{
	struct racer *r = arg;
	unsigned char id[] = "r";
	SaCkptSectionIdT sid = {1, id};
	int i;

	for (i = 0; i < 20000; i++) {
		unsigned v = (unsigned)i;
		SaAisErrorT e = saCkptSectionOverwrite(r->h, &sid, &v, sizeof v);
		if (e == SA_AIS_OK)
			r->ok++;
		else if (e == SA_AIS_ERR_BAD_HANDLE)
			r->bad_handle++;
		else
			r->other++;
	}
	return NULL;
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cb = {NULL, sync_done};
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ACTIVE_REPLICA, 8 * 64, SA_TIME_ONE_SECOND, 8, 64, 8};
	pthread_t d, t[WRITERS];
	struct writer w[WRITERS];
	SaAisErrorT drc = SA_AIS_ERR_LIBRARY;
	unsigned long written = 0;
	int i;

	CHECK_START("threads");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=ctest_threads_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, &cb, &v), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs,
				      SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE,
				      CK_TIMEOUT, &ckpt), SA_AIS_OK);
	for (i = 0; i < WRITERS; i++) {
		unsigned char id[2] = {'w', (unsigned char)('0' + i)};
		SaCkptSectionIdT sid = {2, id};
		SaCkptSectionCreationAttributesT ca = {&sid, SA_TIME_END};
		CHECK_EQ(saCkptSectionCreate(ckpt, &ca, NULL, 0), SA_AIS_OK);
	}

	/* Writers and a blocking dispatcher, together. */
	CHECK(pthread_create(&d, NULL, dispatcher, &drc) == 0);
	for (i = 0; i < WRITERS; i++) {
		w[i].index = i;
		w[i].ok = w[i].failed = 0;
		CHECK(pthread_create(&t[i], NULL, writer, &w[i]) == 0);
	}
	for (i = 0; i < WRITERS; i++) {
		pthread_join(t[i], NULL);
		written += w[i].ok;
		CHECK_INT(w[i].failed, 0);
	}
	CHECK_INT(written, WRITERS * WRITES);
	for (i = 0; i < 500 && callbacks < written; i++)
		ck_sleep_ms(10);
	CHECK_INT(callbacks, written);
	for (i = 0; i < WRITERS; i++) {
		unsigned char id[2] = {'w', (unsigned char)('0' + i)};
		unsigned got = 0;
		SaCkptIOVectorElementT iov = {{2, id}, &got, sizeof got, 0, 0};
		CHECK_EQ(saCkptCheckpointRead(ckpt, &iov, 1, NULL), SA_AIS_OK);
		CHECK_INT(got, WRITES - 1);
	}

	/* Finalize from this thread: the blocking dispatch returns. */
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	pthread_join(d, NULL);
	CHECK_EQ(drc, SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ckpt), SA_AIS_ERR_BAD_HANDLE);

	/* Close drops the handle's queued callbacks. */
	callbacks = 0;
	v.releaseCode = 'B';
	v.majorVersion = 2;
	v.minorVersion = 2;
	CHECK_EQ(saCkptInitialize(&lib, &cb, &v), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &ckpt),
		 SA_AIS_OK);
	for (i = 0; i < 10; i++)
		CHECK_EQ(saCkptCheckpointSynchronizeAsync(ckpt, i), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ckpt), SA_AIS_OK);
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_OK);
	CHECK_INT(callbacks, 0);

	/* A handle closed while other threads use it. */
	{
		struct racer r[2];
		pthread_t rt[2];
		unsigned char id[] = "r";
		SaCkptSectionIdT sid = {1, id};
		SaCkptSectionCreationAttributesT ca = {&sid, SA_TIME_END};

		CHECK_EQ(saCkptCheckpointOpen(lib, &name, NULL,
					      SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &ckpt),
			 SA_AIS_OK);
		CHECK_EQ(saCkptSectionCreate(ckpt, &ca, NULL, 0), SA_AIS_OK);
		for (i = 0; i < 2; i++) {
			r[i].h = ckpt;
			r[i].ok = r[i].bad_handle = r[i].other = 0;
			CHECK(pthread_create(&rt[i], NULL, racer, &r[i]) == 0);
		}
		ck_sleep_ms(5);
		CHECK_EQ(saCkptCheckpointClose(ckpt), SA_AIS_OK);
		for (i = 0; i < 2; i++) {
			pthread_join(rt[i], NULL);
			CHECK_INT(r[i].other, 0);
			CHECK_INT(r[i].ok + r[i].bad_handle, 20000);
		}
	}

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
