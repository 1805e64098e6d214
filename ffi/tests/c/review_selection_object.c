/*
 * review_selection_object.c: the selection object must say whether
 * callbacks are pending (spec 3.4.2: "The invoking process can use this
 * handle to detect pending callbacks"; docs/ARCHITECTURE.md 9: the eventfd
 * count "mirrors" the callback queue).
 *
 * A synchronize callback is queued for a checkpoint handle, and the handle
 * is closed before the callback is dispatched: Close cancels the callback
 * (spec 3.5.3). After that nothing is pending, so once the application
 * has run saCkptDispatch(SA_DISPATCH_ALL) the selection object must not
 * stay readable: an application that dispatches from a poll()/select()
 * loop (the csa103 tutorial) would otherwise spin forever without ever
 * running a callback.
 *
 * Third part, without any Close: one thread queues synchronize callbacks
 * while another dispatches (SA_DISPATCH_ALL) in a loop, as a threaded
 * application does. When both are done and everything was dispatched,
 * the selection object must not be readable either. (The queue is
 * updated under a lock and the eventfd written after it is released, so
 * a dispatcher can take a callback before its count is written; the count
 * then stays with nothing queued.)
 */
#include "check.h"

#include <poll.h>
#include <pthread.h>

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static volatile int runs;
static SaCkptHandleT lib3;
static SaCkptCheckpointHandleT ck3;
static volatile int producing;

/* Fewer under valgrind (CKPT_C_VALGRIND=1), which runs one thread at a time. */
static unsigned callbacks_per_round = 20000;

static void *producer(void *arg)
{
	unsigned i;

	(void)arg;
	for (i = 0; i < callbacks_per_round; i++)
		while (saCkptCheckpointSynchronizeAsync(ck3, i) == SA_AIS_ERR_TRY_AGAIN)
			;
	producing = 0;
	return NULL;
}

static void sync_cb(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	(void)e;
	runs++;
}

/* 1 if fd is readable now, 0 if not. */
static int readable(int fd)
{
	struct pollfd p;

	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cbs = {NULL, sync_cb};
	SaCkptHandleT lib, lib2;
	SaCkptCheckpointHandleT ck;
	SaSelectionObjectT so;
	SaCkptCheckpointCreationAttributesT attrs = {
		SA_CKPT_WR_ACTIVE_REPLICA, 2 * 16, SA_TIME_ONE_MINUTE, 2, 16, 8};
	SaNameT name;
	int i, spins;

	CHECK_START("review_selection_object");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_selobj_%ld", (long)getpid());
	if (!CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSelectionObjectGet(lib, &so), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);

	/* Nothing queued: not readable. */
	CHECK(!readable((int)so));

	/* Three callbacks queued, then cancelled by Close. */
	for (i = 0; i < 3; i++)
		CHECK_EQ(saCkptCheckpointSynchronizeAsync(ck, (SaInvocationT)i), SA_AIS_OK);
	CHECK(readable((int)so));
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);

	/* The application's loop: dispatch while the selection object says
	   something is pending. It must settle (no callback runs: they were
	   cancelled). */
	for (spins = 0; spins < 100 && readable((int)so); spins++)
		saCkptDispatch(lib, SA_DISPATCH_ALL);
	CHECK_INT(runs, 0);
	if (!CHECK(!readable((int)so)))
		printf("    the selection object stayed readable after %d dispatches with nothing pending\n",
		       spins);

	/* The same with SA_DISPATCH_ONE, on a fresh library instance. */
	CHECK_EQ(saCkptInitialize(&lib2, &cbs, &v), SA_AIS_OK);
	CHECK_EQ(saCkptSelectionObjectGet(lib2, &so), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib2, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &ck),
		 SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointSynchronizeAsync(ck, 7), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	for (spins = 0; spins < 100 && readable((int)so); spins++)
		saCkptDispatch(lib2, SA_DISPATCH_ONE);
	CHECK_INT(runs, 0);
	if (!CHECK(!readable((int)so)))
		printf("    (SA_DISPATCH_ONE) still readable after %d dispatches with nothing pending\n",
		       spins);
	CHECK_EQ(saCkptFinalize(lib2), SA_AIS_OK);

	/* Third part: a producer thread and a dispatching thread. */
	CHECK_EQ(saCkptInitialize(&lib3, &cbs, &v), SA_AIS_OK);
	CHECK_EQ(saCkptSelectionObjectGet(lib3, &so), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointOpen(lib3, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT,
					  &ck3), SA_AIS_OK)) {
		pthread_t t;
		int round, stale = 0;

		/* A race: up to 10 rounds, until one leaves the object readable. */
		int rounds = 10;

		if (getenv("CKPT_C_VALGRIND") != NULL) {
			rounds = 2;
			callbacks_per_round = 1000;
		}
		for (round = 0; round < rounds && !stale; round++) {
			runs = 0;
			producing = 1;
			pthread_create(&t, NULL, producer, NULL);
			while (producing)
				saCkptDispatch(lib3, SA_DISPATCH_ALL);
			pthread_join(t, NULL);
			CHECK_EQ(saCkptDispatch(lib3, SA_DISPATCH_ALL), SA_AIS_OK);
			CHECK_INT(runs, callbacks_per_round);
			for (spins = 0; spins < 100 && readable((int)so); spins++)
				saCkptDispatch(lib3, SA_DISPATCH_ALL);
			stale = readable((int)so);
		}
		if (!CHECK(!stale))
			printf("    (threads, round %d) still readable after %d dispatches with nothing pending\n",
			       round, spins);
	}
	CHECK_EQ(saCkptFinalize(lib3), SA_AIS_OK);

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
