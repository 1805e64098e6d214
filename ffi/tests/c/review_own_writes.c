/*
 * review_own_writes.c: a tracked handle's own writes must not be reported
 * to it, and every other handle's writes must be (README "Using it from
 * C": "a standby is told which sections another handle changed";
 * docs/ARCHITECTURE.md 9: "the handle's own writes are not reported to
 * it"; reference 1.5: OpenSAF excludes the writer's own handle).
 *
 * Two threads write at the same time: one through the tracked handle T
 * (section "mine"), one through a handle of another library instance
 * (section "theirs"). Nothing falls behind the log ring (800 paced small
 * writes each, fewer than the 1024 own writes a handle remembers; a
 * dispatcher thread keeps the queue short), so:
 *   - no track callback may name "mine" (T wrote it);
 *   - every write of "theirs" must be reported.
 *
 * The library remembers "its" sequence number by reading the log's last
 * sequence number after the write (Open::through): when the other writer
 * commits in between, T's write is reported to T and the other write is
 * swallowed as T's own.
 */
#include "check.h"

#include <poll.h>
#include <pthread.h>

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define WRITES 800

static SaCkptHandleT trk, plain;
static SaCkptCheckpointHandleT T, W;
static volatile int stop;
static unsigned long mine_reported, theirs_reported, other_reported;
static unsigned long mine_failed, theirs_failed;

static void on_track(SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	SaUint32T i;

	(void)h;
	for (i = 0; i < n; i++) {
		const SaCkptSectionIdT *id = &iov[i].sectionId;

		if (id->idLen == 4 && memcmp(id->id, "mine", 4) == 0)
			mine_reported++;
		else if (id->idLen == 6 && memcmp(id->id, "theirs", 6) == 0)
			theirs_reported++;
		else
			other_reported++;
	}
}

static void *dispatcher(void *arg)
{
	SaSelectionObjectT so;
	struct pollfd p;

	(void)arg;
	if (saCkptSelectionObjectGet(trk, &so) != SA_AIS_OK)
		return NULL;
	while (!stop) {
		p.fd = (int)so;
		p.events = POLLIN;
		p.revents = 0;
		if (poll(&p, 1, 10) > 0)
			saCkptDispatch(trk, SA_DISPATCH_ALL);
	}
	return NULL;
}

struct writer {
	SaCkptCheckpointHandleT ck;
	const char *id;
	unsigned long *failed;
};

static void *writer(void *arg)
{
	struct writer *w = arg;
	SaCkptSectionIdT sid;
	unsigned i;

	sid.idLen = (SaUint16T)strlen(w->id);
	sid.id = (SaUint8T *)(char *)w->id;
	for (i = 0; i < WRITES; i++) {
		SaAisErrorT e;

		while ((e = saCkptSectionOverwrite(w->ck, &sid, &i, sizeof i)) == SA_AIS_ERR_TRY_AGAIN)
			;
		if (e != SA_AIS_OK)
			(*w->failed)++;
		/* Paced, so that the tracker never falls behind the ring. */
		{
			struct timespec ts = {0, 50000};

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int main(void)
{
	SaVersionT v203 = {'B', 2, 3}, v = CK_VERSION_INIT;
	SaCkptCallbacksT_2 cbs = {NULL, NULL, on_track};
	SaCkptCheckpointCreationAttributesT attrs = {
		SA_CKPT_WR_ALL_REPLICAS, 2 * 16, SA_TIME_ONE_MINUTE, 2, 16, 8};
	SaCkptSectionIdT mine = {4, (SaUint8T *)"mine"}, theirs = {6, (SaUint8T *)"theirs"};
	SaCkptSectionCreationAttributesT ca = {NULL, SA_TIME_END};
	struct writer wm = {0, "mine", &mine_failed}, wt = {0, "theirs", &theirs_failed};
	pthread_t d, a, b;
	SaNameT name;
	int i;

	CHECK_START("review_own_writes");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_own_writes_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize_2(&trk, &cbs, &v203), SA_AIS_OK);
	CHECK_EQ(saCkptInitialize(&plain, NULL, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(trk, &name, &attrs, CRW, CK_TIMEOUT, &T), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptCheckpointOpen(plain, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &W),
		 SA_AIS_OK);
	ca.sectionId = &mine;
	CHECK_EQ(saCkptSectionCreate(T, &ca, NULL, 0), SA_AIS_OK);
	ca.sectionId = &theirs;
	CHECK_EQ(saCkptSectionCreate(T, &ca, NULL, 0), SA_AIS_OK);
	CHECK_EQ(saCkptTrack(trk), SA_AIS_OK);

	wm.ck = T;
	wt.ck = W;
	pthread_create(&d, NULL, dispatcher, NULL);
	pthread_create(&a, NULL, writer, &wm);
	pthread_create(&b, NULL, writer, &wt);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	/* Let the tracker catch up and the dispatcher run what it queued. */
	for (i = 0; i < 100 && theirs_reported + mine_reported < WRITES; i++)
		ck_sleep_ms(10);
	ck_sleep_ms(100);
	stop = 1;
	pthread_join(d, NULL);
	saCkptDispatch(trk, SA_DISPATCH_ALL);

	CHECK_INT(mine_failed, 0);
	CHECK_INT(theirs_failed, 0);
	printf("reported: mine %lu (own writes), theirs %lu of %d, other %lu\n",
	       mine_reported, theirs_reported, WRITES, other_reported);
	CHECK_INT(mine_reported, 0);
	CHECK_INT(theirs_reported, WRITES);
	CHECK_INT(other_reported, 0);

	CHECK_EQ(saCkptCheckpointUnlink(plain, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(trk), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(plain), SA_AIS_OK);
	return CHECK_DONE();
}
