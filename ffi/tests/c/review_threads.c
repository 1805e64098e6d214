/*
 * review_threads.c: saCkptFinalize racing other calls on the same handle
 * (README: "Handles work from any number of threads; a stale, closed,
 * finalized ... handle is SA_AIS_ERR_BAD_HANDLE, never a crash"; spec
 * 3.4.4: Finalize closes every checkpoint opened through the handle).
 *
 * Each round: worker threads open, read, iterate and close checkpoints
 * through one library handle, two threads sit in
 * saCkptDispatch(SA_DISPATCH_BLOCKING), another keeps queueing and
 * cancelling callbacks (SynchronizeAsync then Close), and the main thread
 * finalizes the handle. Afterwards:
 *   - every call returned OK or BAD_HANDLE (or, for an open racing the
 *     finalize, NOT_EXIST: the finalize may delete the checkpoint,
 *     retention 0, while the open is under way);
 *   - both blocking dispatches returned;
 *   - no checkpoint handle survived the finalize: the checkpoint has
 *     retention 0, so once the handle is finalized it is gone (an open
 *     that slipped past the finalize would keep it).
 */
#include "check.h"

#include <pthread.h>

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define ROUNDS 40
#define WORKERS 3

static SaCkptHandleT lib;
static SaNameT name;
static volatile int stop;
static volatile int dispatch_returned;
static unsigned long unexpected;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *what, SaAisErrorT e)
{
	if (e == SA_AIS_OK || e == SA_AIS_ERR_BAD_HANDLE || e == SA_AIS_ERR_NO_SECTIONS ||
	    e == SA_AIS_ERR_TRY_AGAIN)
		return;
	pthread_mutex_lock(&lock);
	if (unexpected++ < 10)
		printf("    %s: %s\n", what, ck_err_name(e));
	pthread_mutex_unlock(&lock);
}

static void sync_cb(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	(void)e;
}

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT h, SaAisErrorT e)
{
	(void)inv;
	if (e == SA_AIS_OK)
		saCkptCheckpointClose(h);
}

static void *dispatcher(void *arg)
{
	SaCkptHandleT h = *(SaCkptHandleT *)arg;

	note("dispatch", saCkptDispatch(h, SA_DISPATCH_BLOCKING));
	pthread_mutex_lock(&lock);
	dispatch_returned++;
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void *worker(void *arg)
{
	SaCkptHandleT h = *(SaCkptHandleT *)arg;
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	char buf[16];
	SaCkptIOVectorElementT e;
	SaCkptSectionDescriptorT d;

	while (!stop) {
		SaCkptCheckpointHandleT ck;
		SaCkptSectionIterationHandleT it;
		SaAisErrorT r = saCkptCheckpointOpen(h, &name, NULL, SA_CKPT_CHECKPOINT_READ |
						     SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &ck);

		if (r != SA_AIS_ERR_NOT_EXIST)
			note("open", r);
		if (r != SA_AIS_OK) {
			note("open async", saCkptCheckpointOpenAsync(h, 1, &name, NULL,
								     SA_CKPT_CHECKPOINT_READ));
			continue;
		}
		memset(&e, 0, sizeof e);
		e.sectionId = id;
		e.dataBuffer = buf;
		e.dataSize = sizeof buf;
		note("read", saCkptCheckpointRead(ck, &e, 1, NULL));
		r = saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, &it);
		note("iteration", r);
		if (r == SA_AIS_OK) {
			while ((r = saCkptSectionIterationNext(it, &d)) == SA_AIS_OK)
				;
			note("next", r);
			note("iteration finalize", saCkptSectionIterationFinalize(it));
		}
		note("sync async", saCkptCheckpointSynchronizeAsync(ck, 2));
		note("open async", saCkptCheckpointOpenAsync(h, 1, &name, NULL, SA_CKPT_CHECKPOINT_READ));
		note("close", saCkptCheckpointClose(ck));
	}
	return NULL;
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cbs = {open_cb, sync_cb};
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ACTIVE_REPLICA, 2 * 16, 0, 2, 16, 8};
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	SaCkptHandleT other;
	int round, i, hung = 0;

	CHECK_START("review_threads");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_threads_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&other, NULL, &v), SA_AIS_OK);
	/* Fewer under valgrind (CKPT_C_VALGRIND=1), which runs one thread at a time. */
	int rounds = getenv("CKPT_C_VALGRIND") != NULL ? 4 : ROUNDS;

	for (round = 0; round < rounds && !hung; round++) {
		pthread_t d[2], w[WORKERS];
		SaCkptCheckpointHandleT keep;
		SaAisErrorT e;

		if (!CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK))
			break;
		/* The checkpoint lives while `lib` has it open (retention 0). */
		if (!CHECK_EQ(saCkptCheckpointOpen(lib, &name, &a, CRW, CK_TIMEOUT, &keep), SA_AIS_OK))
			break;
		saCkptSectionCreate(keep, &ca, "data", 4);
		stop = 0;
		dispatch_returned = 0;
		for (i = 0; i < 2; i++)
			pthread_create(&d[i], NULL, dispatcher, &lib);
		for (i = 0; i < WORKERS; i++)
			pthread_create(&w[i], NULL, worker, &lib);
		ck_sleep_ms(5 + round % 7);
		CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
		stop = 1;
		for (i = 0; i < WORKERS; i++)
			pthread_join(w[i], NULL);
		for (i = 0; i < 500 && dispatch_returned < 2; i++)
			ck_sleep_ms(10);
		if (!CHECK_INT(dispatch_returned, 2)) {
			printf("    round %d: a blocking dispatch did not return after saCkptFinalize\n",
			       round);
			hung = 1;
			break;
		}
		for (i = 0; i < 2; i++)
			pthread_join(d[i], NULL);
		/* Nothing of `lib` keeps the checkpoint. */
		e = saCkptCheckpointUnlink(other, &name);
		if (!CHECK_EQ(e, SA_AIS_ERR_NOT_EXIST))
			printf("    round %d: a checkpoint handle outlived saCkptFinalize\n", round);
	}
	CHECK_INT(unexpected, 0);
	if (!hung)
		CHECK_EQ(saCkptFinalize(other), SA_AIS_OK);
	return CHECK_DONE();
}
