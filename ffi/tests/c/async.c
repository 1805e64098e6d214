/*
 * async.c: callbacks. saCkptCheckpointOpenAsync and
 * saCkptCheckpointSynchronizeAsync, their callbacks run by saCkptDispatch
 * (and only there), the selection object becoming readable, SA_DISPATCH_ONE
 * running one callback, and ERR_INIT without the callback.
 */
#include "check.h"

#include <poll.h>

#include <saCkpt.h>

#define RW (SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define CRW (SA_CKPT_CHECKPOINT_CREATE | RW)

#define MAX_CALLS 8

static int open_calls;
static SaInvocationT open_inv[MAX_CALLS];
static SaCkptCheckpointHandleT open_ck[MAX_CALLS];
static SaAisErrorT open_err[MAX_CALLS];

static int sync_calls;
static SaInvocationT sync_inv[MAX_CALLS];
static SaAisErrorT sync_err[MAX_CALLS];

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT ck,
		    SaAisErrorT err)
{
	if (open_calls < MAX_CALLS) {
		open_inv[open_calls] = inv;
		open_ck[open_calls] = ck;
		open_err[open_calls] = err;
	}
	open_calls++;
}

static void sync_cb(SaInvocationT inv, SaAisErrorT err)
{
	if (sync_calls < MAX_CALLS) {
		sync_inv[sync_calls] = inv;
		sync_err[sync_calls] = err;
	}
	sync_calls++;
}

/* Waits up to 5 s for the selection object to become readable. */
static int readable(SaSelectionObjectT so)
{
	struct pollfd pfd;
	int rc;

	pfd.fd = (int)so;
	pfd.events = POLLIN;
	pfd.revents = 0;
	do
		rc = poll(&pfd, 1, 5000);
	while (rc < 0);
	return rc == 1 && (pfd.revents & POLLIN) != 0;
}

/* Dispatches until *counter (callbacks run so far) reaches want. */
static void dispatch_until(int line, SaCkptHandleT h, SaSelectionObjectT so,
			   const int *counter, int want)
{
	int i;

	for (i = 0; i < 50 && *counter < want; i++) {
		if (!readable(so))
			break;
		if (!CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK))
			break;
	}
	if (!CHECK_INT(*counter, want))
		printf("    (callbacks run, awaited at line %d)\n", line);
}

#define DISPATCH_UNTIL(h, so, counter, want) \
	dispatch_until(__LINE__, h, so, counter, want)

static SaCkptCheckpointCreationAttributesT attrs_for(
	SaCkptCheckpointCreationFlagsT flags)
{
	SaCkptCheckpointCreationAttributesT a;

	memset(&a, 0, sizeof a);
	a.creationFlags = flags;
	a.checkpointSize = 1024;
	a.retentionDuration = SA_TIME_ONE_SECOND;
	a.maxSections = 4;
	a.maxSectionSize = 256;
	a.maxSectionIdSize = 16;
	return a;
}

static void open_async(SaCkptHandleT lib, SaCkptHandleT nocb,
		       SaSelectionObjectT so, const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs =
		attrs_for(SA_CKPT_WR_ALL_REPLICAS);
	SaCkptCheckpointDescriptorT st = { 0 };
	int i, seen78 = 0, seen79 = 0;

	/* No open callback registered. */
	CHECK_EQ(saCkptCheckpointOpenAsync(nocb, 1, name, &attrs, CRW),
		 SA_AIS_ERR_INIT);
	/* Parameter errors are returned by the call itself (the callback's
	   error list has no INVALID_PARAM). */
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 2, name, NULL, CRW),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 3, NULL, &attrs, CRW),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 4, name, &attrs, RW),
		 SA_AIS_ERR_INVALID_PARAM);
	attrs.checkpointSize = 4 * 256 + 1;
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 5, name, &attrs, CRW),
		 SA_AIS_ERR_INVALID_PARAM);
	attrs.checkpointSize = 1024;
	CHECK_INT(open_calls, 0);

	/* The callback runs in saCkptDispatch, not before. */
	if (!CHECK_EQ(saCkptCheckpointOpenAsync(lib, 77, name, &attrs, CRW),
		      SA_AIS_OK))
		return;
	CHECK(readable(so));
	CHECK_INT(open_calls, 0);
	DISPATCH_UNTIL(lib, so, &open_calls, 1);
	if (open_calls != 1)
		return;
	CHECK_INT(open_inv[0], 77);
	CHECK_EQ(open_err[0], SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointStatusGet(open_ck[0], &st), SA_AIS_OK))
		CHECK_INT(st.checkpointCreationAttributes.maxSections, 4);

	/* SA_DISPATCH_ONE runs one callback. */
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 78, name, NULL,
					   SA_CKPT_CHECKPOINT_READ),
		 SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 79, name, NULL,
					   SA_CKPT_CHECKPOINT_READ),
		 SA_AIS_OK);
	if (CHECK(readable(so))) {
		CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ONE), SA_AIS_OK);
		CHECK_INT(open_calls, 2);
	}
	DISPATCH_UNTIL(lib, so, &open_calls, 3);
	for (i = 1; i < open_calls && i < MAX_CALLS; i++) {
		CHECK_EQ(open_err[i], SA_AIS_OK);
		if (open_inv[i] == 78)
			seen78++;
		if (open_inv[i] == 79)
			seen79++;
		if (open_err[i] == SA_AIS_OK)
			CHECK_EQ(saCkptCheckpointClose(open_ck[i]), SA_AIS_OK);
	}
	CHECK_INT(seen78, 1);
	CHECK_INT(seen79, 1);

	CHECK_EQ(saCkptCheckpointClose(open_ck[0]), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

static void synchronize_async(SaCkptHandleT lib, SaCkptHandleT nocb,
			      SaSelectionObjectT so, const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs =
		attrs_for(SA_CKPT_WR_ACTIVE_REPLICA |
			  SA_CKPT_CHECKPOINT_COLLOCATED);
	SaCkptCheckpointHandleT ck = 0, ck2 = 0;

	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	if (!CHECK_EQ(saCkptActiveReplicaSet(ck), SA_AIS_OK))
		goto out;

	/* Opened through a handle without a synchronize callback. */
	if (CHECK_EQ(saCkptCheckpointOpen(nocb, name, NULL, RW, CK_TIMEOUT,
					  &ck2), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointSynchronizeAsync(ck2, 1),
			 SA_AIS_ERR_INIT);
		CHECK_EQ(saCkptCheckpointClose(ck2), SA_AIS_OK);
	}

	if (CHECK_EQ(saCkptCheckpointSynchronizeAsync(ck, 88), SA_AIS_OK)) {
		CHECK(readable(so));
		CHECK_INT(sync_calls, 0);
		DISPATCH_UNTIL(lib, so, &sync_calls, 1);
		if (sync_calls == 1) {
			CHECK_INT(sync_inv[0], 88);
			CHECK_EQ(sync_err[0], SA_AIS_OK);
		}
	}
out:
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

int main(void)
{
	SaCkptCallbacksT cbs = { open_cb, sync_cb };
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib = 0, nocb = 0;
	SaSelectionObjectT so = 0;
	SaNameT a, b;

	CHECK_START("async");
	ck_name(&a, "async", "a");
	ck_name(&b, "async", "b");
	if (!CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK))
		return CHECK_DONE();
	v = (SaVersionT)CK_VERSION_INIT;
	if (!CHECK_EQ(saCkptInitialize(&nocb, NULL, &v), SA_AIS_OK))
		return CHECK_DONE();
	if (!CHECK_EQ(saCkptSelectionObjectGet(lib, &so), SA_AIS_OK))
		return CHECK_DONE();

	open_async(lib, nocb, so, &a);
	synchronize_async(lib, nocb, so, &b);

	/* Nothing left behind (NOT_EXIST is the expected answer here). */
	saCkptCheckpointUnlink(lib, &a);
	saCkptCheckpointUnlink(lib, &b);
	CHECK_EQ(saCkptFinalize(nocb), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
