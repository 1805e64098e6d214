/*
 * review_track_close.c: a checkpoint handle that is being tracked must be
 * closed when saCkptCheckpointClose (or saCkptFinalize) returns.
 *
 * Spec 3.5.3: "When the invocation of the saCkptCheckpointClose() function
 * completes successfully, if no process has the checkpoint open any
 * longer, ... the checkpoint will be deleted when the retention duration
 * expires". With a retention duration of 0 the checkpoint is gone when the
 * last close returns (reference 2.2: OpenSAF's cpsv_it_rdset_05; the
 * library does the same for an untracked handle, checked first below).
 *
 * With tracking on (saCkptTrack), the tracker thread of the handle holds
 * the checkpoint open for up to its 10 ms poll after Close/Finalize have
 * returned, so an open without CREATE right after the close finds the old
 * checkpoint (and keeps it alive) instead of NOT_EXIST.
 */
#include "check.h"

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static void on_track(SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	(void)h;
	(void)iov;
	(void)n;
}

/* Opens name through `through` with retention 0, closes it (or finalizes
   `through` if finalize), and checks at once, through `other`, that it is
   gone. */
static void closed_is_gone(const char *what, SaCkptHandleT through, SaCkptHandleT other,
			   const SaNameT *name, int finalize)
{
	SaCkptCheckpointCreationAttributesT attrs = {
		SA_CKPT_WR_ALL_REPLICAS, 2 * 16, 0, 2, 16, 8};
	SaCkptCheckpointHandleT ck, again;
	SaAisErrorT e;

	if (!CHECK_EQ(saCkptCheckpointOpen(through, name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK))
		return;
	if (finalize)
		CHECK_EQ(saCkptFinalize(through), SA_AIS_OK);
	else
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	e = saCkptCheckpointOpen(other, name, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &again);
	if (!CHECK_EQ(e, SA_AIS_ERR_NOT_EXIST))
		printf("    (%s: the checkpoint outlived its last close)\n", what);
	if (e == SA_AIS_OK)
		saCkptCheckpointClose(again);
	/* Leave nothing behind for the next part. */
	ck_sleep_ms(50);
	saCkptCheckpointUnlink(other, name);
}

int main(void)
{
	SaVersionT v203 = {'B', 2, 3}, v = CK_VERSION_INIT;
	SaCkptCallbacksT_2 cbs = {NULL, NULL, on_track};
	SaCkptHandleT plain, tracking, other;
	SaNameT name;

	CHECK_START("review_track_close");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_track_close_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&other, NULL, &v), SA_AIS_OK);

	/* Untracked: gone at once. */
	CHECK_EQ(saCkptInitialize(&plain, NULL, &v), SA_AIS_OK);
	closed_is_gone("untracked close", plain, other, &name, 0);
	CHECK_EQ(saCkptFinalize(plain), SA_AIS_OK);

	/* Tracked: the same is expected. */
	CHECK_EQ(saCkptInitialize_2(&tracking, &cbs, &v203), SA_AIS_OK);
	CHECK_EQ(saCkptTrack(tracking), SA_AIS_OK);
	closed_is_gone("tracked close", tracking, other, &name, 0);
	closed_is_gone("tracked finalize", tracking, other, &name, 1);

	CHECK_EQ(saCkptFinalize(other), SA_AIS_OK);
	return CHECK_DONE();
}
