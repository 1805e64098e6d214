/*
 * review_dispatch_finalize.c: every saCkptDispatch(SA_DISPATCH_BLOCKING)
 * on a handle returns when the handle is finalized (README "Using it from
 * C": "SA_DISPATCH_BLOCKING returns when the handle is finalized";
 * reference 8: "SA_DISPATCH_BLOCKING must return when the handle is
 * finalized"; spec 3.4.3/3.4.4), however many threads dispatch it.
 *
 * Each round: four threads block in saCkptDispatch on one handle; two
 * threads keep queueing synchronize callbacks (each wakes every
 * dispatcher; those that then find the queue empty take the path that
 * drains "a count with nothing queued"); the main thread finalizes the
 * handle. Nothing else: no Close, no cancelled callback.
 *
 * Finalize writes one count to the eventfd. A dispatcher that has just
 * checked "not finalized" and then drains "a count with nothing queued"
 * can take that count; the dispatchers still in poll() then sleep forever.
 * The race is narrow: the program runs rounds for up to 15 s and fails at
 * the first round in which a dispatcher has not returned 3 s after the
 * finalize (typically within a few hundred rounds, a few seconds).
 */
#include "check.h"

#include <pthread.h>

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define DISPATCHERS 4
#define PRODUCERS 2

static SaCkptHandleT lib;
static SaNameT name;
static volatile int stop;
static int returned;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void sync_cb(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	(void)e;
}

static void *dispatcher(void *arg)
{
	(void)arg;
	saCkptDispatch(lib, SA_DISPATCH_BLOCKING);
	pthread_mutex_lock(&lock);
	returned++;
	pthread_mutex_unlock(&lock);
	return NULL;
}

static SaCkptCheckpointHandleT round_ck;

/* Queues synchronize callbacks: each wakes every dispatcher, and those
   that then find the queue empty drain a count. */
static void *producer(void *arg)
{
	(void)arg;
	while (!stop)
		saCkptCheckpointSynchronizeAsync(round_ck, 1);
	return NULL;
}

static int all_returned(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = returned;
	pthread_mutex_unlock(&lock);
	return n == DISPATCHERS;
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cbs = {NULL, sync_cb};
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ACTIVE_REPLICA, 2 * 16, SA_TIME_ONE_MINUTE, 2, 16, 8};
	SaCkptHandleT keeper;
	SaCkptCheckpointHandleT kept;
	SaTimeT end;
	int round, i, hung = 0;

	CHECK_START("review_dispatch_finalize");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_dispatch_finalize_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&keeper, NULL, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(keeper, &name, &a, CRW, CK_TIMEOUT, &kept), SA_AIS_OK))
		return CHECK_DONE();

	end = ck_now() + 15 * SA_TIME_ONE_SECOND;
	for (round = 0; ck_now() < end; round++) {
		pthread_t d[DISPATCHERS], c[PRODUCERS];

		if (!CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK))
			break;
		stop = 0;
		returned = 0;
		for (i = 0; i < DISPATCHERS; i++)
			pthread_create(&d[i], NULL, dispatcher, NULL);
		if (saCkptCheckpointOpen(lib, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT,
					 &round_ck) != SA_AIS_OK)
			round_ck = 0;
		for (i = 0; i < PRODUCERS; i++)
			pthread_create(&c[i], NULL, producer, NULL);
		{
			struct timespec ts = {0, 0};

			ts.tv_nsec = (round % 5) * 100000L;
			nanosleep(&ts, NULL);
		}
		CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
		stop = 1;
		for (i = 0; i < PRODUCERS; i++)
			pthread_join(c[i], NULL);
		for (i = 0; i < 300 && !all_returned(); i++)
			ck_sleep_ms(10);
		if (!CHECK(all_returned())) {
			printf("    round %d: %d of %d blocking dispatches returned after saCkptFinalize\n",
			       round, returned, DISPATCHERS);
			hung = 1;
			break;
		}
		for (i = 0; i < DISPATCHERS; i++)
			pthread_join(d[i], NULL);
	}
	printf("%d rounds\n", round);

	CHECK_EQ(saCkptCheckpointUnlink(keeper, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(keeper), SA_AIS_OK);
	/* Hung dispatchers are left behind: exit ends them. */
	(void)hung;
	return CHECK_DONE();
}
