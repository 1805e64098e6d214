/*
 * review_track_stop.c: what saCkptTrackStop stops (B.02.03 is OpenSAF's
 * non-standard proposal; docs/ARCHITECTURE.md 9 says nothing is queued once
 * tracking is off).
 *
 * The standby tracks and receives one change (the tracker is running and
 * idle). It stops tracking; then the writer changes the section. One would
 * expect no track callback for that change (tracking was off when it was
 * made; OpenSAF's node director stops sending at once). The library
 * checks the tracking flag under the queue's lock when a tracker queues,
 * and saCkptTrackStop drops the track callbacks not yet dispatched: none
 * is reported.
 */
#include "check.h"

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static unsigned reported;

static void on_track(SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	(void)h;
	(void)iov;
	reported += n;
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT, v203 = {'B', 2, 3};
	SaCkptCallbacksT_2 cbs = {NULL, NULL, on_track};
	SaCkptHandleT writer, standby;
	SaCkptCheckpointHandleT w, s;
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ALL_REPLICAS, 2 * 16, 0, 2, 16, 8};
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	SaNameT name;
	int i, round;

	CHECK_START("review_track_stop");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_track_stop_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&writer, NULL, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(writer, &name, &a, CRW, CK_TIMEOUT, &w), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSectionCreate(w, &ca, NULL, 0), SA_AIS_OK);
	CHECK_EQ(saCkptInitialize_2(&standby, &cbs, &v203), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(standby, &name, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &s),
		 SA_AIS_OK);

	for (round = 0; round < 3; round++) {
		/* Tracking works. */
		CHECK_EQ(saCkptTrack(standby), SA_AIS_OK);
		ck_sleep_ms(30);
		reported = 0;
		CHECK_EQ(saCkptSectionOverwrite(w, &id, "on", 2), SA_AIS_OK);
		for (i = 0; i < 200 && reported == 0; i++) {
			ck_sleep_ms(5);
			CHECK_EQ(saCkptDispatch(standby, SA_DISPATCH_ALL), SA_AIS_OK);
		}
		CHECK_INT(reported, 1);
		ck_sleep_ms(30);

		/* Stopped: a later change is not reported. */
		CHECK_EQ(saCkptTrackStop(standby), SA_AIS_OK);
		reported = 0;
		CHECK_EQ(saCkptSectionOverwrite(w, &id, "off", 3), SA_AIS_OK);
		ck_sleep_ms(100);
		CHECK_EQ(saCkptDispatch(standby, SA_DISPATCH_ALL), SA_AIS_OK);
		CHECK_INT(reported, 0);
		if (reported)
			printf("round %d: a change made after saCkptTrackStop returned was reported\n",
			       round);
		ck_sleep_ms(30);
	}

	CHECK_EQ(saCkptCheckpointUnlink(writer, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(standby), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(writer), SA_AIS_OK);
	return CHECK_DONE();
}
