/*
 * review_reentrancy.c: callbacks that call back into the library, from a
 * dispatch in the same thread. Nothing may deadlock or crash, and
 * saCkptFinalize from inside a callback run by SA_DISPATCH_BLOCKING makes
 * that dispatch return (spec 3.4.3/3.4.4; README: "SA_DISPATCH_BLOCKING
 * returns when the handle is finalized").
 *
 * - The synchronize callback queues another synchronize (5 times) and
 *   dispatches recursively (SA_DISPATCH_ONE and ALL).
 * - The open callback reads through the handle it receives, closes it,
 *   and on the last open finalizes the library handle being dispatched.
 * - The track callback reads the changed section, registers an arrival
 *   callback, stops tracking and closes the tracked handle.
 */
#include "check.h"

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define OPENS 3

static SaCkptHandleT lib, tlib;
static SaCkptCheckpointHandleT ck, tck;
static SaNameT name;
static int syncs, opens, tracks, finalized_in_callback;
static int failures_in_callbacks;

#define CB_CHECK(call, want) \
	do { \
		if (!CHECK_EQ(call, want)) \
			failures_in_callbacks++; \
	} while (0)

static void sync_cb(SaInvocationT inv, SaAisErrorT e)
{
	CB_CHECK(e, SA_AIS_OK);
	syncs++;
	if (inv < 5)
		CB_CHECK(saCkptCheckpointSynchronizeAsync(ck, inv + 1), SA_AIS_OK);
	CB_CHECK(saCkptDispatch(lib, inv % 2 ? SA_DISPATCH_ONE : SA_DISPATCH_ALL), SA_AIS_OK);
}

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT h, SaAisErrorT e)
{
	SaCkptCheckpointDescriptorT st;

	(void)inv;
	CB_CHECK(e, SA_AIS_OK);
	opens++;
	CB_CHECK(saCkptCheckpointStatusGet(h, &st), SA_AIS_OK);
	CB_CHECK(saCkptCheckpointClose(h), SA_AIS_OK);
	CB_CHECK(saCkptCheckpointClose(h), SA_AIS_ERR_BAD_HANDLE);
	if (opens == OPENS) {
		CB_CHECK(saCkptFinalize(lib), SA_AIS_OK);
		finalized_in_callback = 1;
		/* Calls after the finalize, still inside the callback. */
		CB_CHECK(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_ERR_BAD_HANDLE);
		CB_CHECK(saCkptCheckpointSynchronizeAsync(ck, 99), SA_AIS_ERR_BAD_HANDLE);
	}
}

static void arrival(const SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	(void)h;
	(void)iov;
	(void)n;
}

static void track_cb(SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	char buf[16];
	SaCkptIOVectorElementT r;

	tracks++;
	if (n == 0)
		return;
	memset(&r, 0, sizeof r);
	r.sectionId = iov[0].sectionId;
	r.dataBuffer = buf;
	r.dataSize = sizeof buf;
	if (tracks == 1) {
		CB_CHECK(saCkptCheckpointRead(h, &r, 1, NULL), SA_AIS_OK);
		CB_CHECK(ncsCkptRegisterCkptArrivalCallback(tlib, arrival), SA_AIS_OK);
		CB_CHECK(saCkptTrackStop(tlib), SA_AIS_OK);
		CB_CHECK(saCkptCheckpointClose(h), SA_AIS_OK);
		CB_CHECK(saCkptDispatch(tlib, SA_DISPATCH_ALL), SA_AIS_OK);
	}
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT, v203 = {'B', 2, 3};
	SaCkptCallbacksT cbs = {open_cb, sync_cb};
	SaCkptCallbacksT_2 tcbs = {NULL, NULL, track_cb};
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ACTIVE_REPLICA, 4 * 16, 0, 4, 16, 8};
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	int i;

	CHECK_START("review_reentrancy");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_reentrancy_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, &name, &a, CRW, CK_TIMEOUT, &ck), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "x", 1), SA_AIS_OK);

	/* Recursive synchronize callbacks. */
	CHECK_EQ(saCkptCheckpointSynchronizeAsync(ck, 0), SA_AIS_OK);
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_OK);
	CHECK_INT(syncs, 6);

	/* Track callback re-entering. */
	CHECK_EQ(saCkptInitialize_2(&tlib, &tcbs, &v203), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(tlib, &name, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &tck),
		 SA_AIS_OK);
	CHECK_EQ(saCkptTrack(tlib), SA_AIS_OK);
	CHECK_EQ(saCkptSectionOverwrite(ck, &id, "y", 1), SA_AIS_OK);
	for (i = 0; i < 200 && tracks == 0; i++) {
		ck_sleep_ms(10);
		CHECK_EQ(saCkptDispatch(tlib, SA_DISPATCH_ALL), SA_AIS_OK);
	}
	CHECK_INT(tracks, 1);
	CHECK_EQ(saCkptCheckpointClose(tck), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptFinalize(tlib), SA_AIS_OK);
	/* (A tracker lets go of its checkpoint up to 10 ms after the close:
	   see review_track_close.c. Not what this program is about.) */
	ck_sleep_ms(50);

	/* Open callbacks; the last finalizes the handle being dispatched:
	   the blocking dispatch must return. */
	for (i = 0; i < OPENS; i++)
		CHECK_EQ(saCkptCheckpointOpenAsync(lib, (SaInvocationT)i, &name, NULL,
						   SA_CKPT_CHECKPOINT_READ), SA_AIS_OK);
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_BLOCKING), SA_AIS_OK);
	CHECK_INT(opens, OPENS);
	CHECK_INT(finalized_in_callback, 1);
	CHECK_INT(failures_in_callbacks, 0);
	/* The finalize closed ck. */
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_ERR_BAD_HANDLE);

	{
		SaCkptHandleT l2;

		CHECK_EQ(saCkptInitialize(&l2, NULL, &v), SA_AIS_OK);
		/* Retention 0 and every handle closed: already gone. */
		CHECK_EQ(saCkptCheckpointUnlink(l2, &name), SA_AIS_ERR_NOT_EXIST);
		CHECK_EQ(saCkptFinalize(l2), SA_AIS_OK);
	}
	return CHECK_DONE();
}
