/*
 * track.c: hot standby without polling, OpenSAF style (B.02.03 track and
 * the older arrival callback): a change notification without data.
 *
 * A "standby" library instance (B.02.03, with a track callback) opens the
 * checkpoint for reading and turns tracking on; a "writer" instance writes.
 * The standby's dispatch loop on its selection object receives a track
 * callback per batch of changes: each element names the section, dataSize
 * and dataOffset, with dataBuffer NULL and readSize 0. The standby's own
 * writes through its handle are not reported to it. Then the refusals:
 * wrong version, no callback, per-checkpoint tracking, NULL arrival callback.
 */
#include "check.h"

#include <poll.h>

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

struct seen {
	unsigned calls, elements, null_buffers, bad_handle;
	char last_id[16];
	SaSizeT last_size;
	SaOffsetT last_offset;
};

static struct seen seen;
static SaCkptCheckpointHandleT expected_handle;

static void on_track(SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	SaUint32T i;

	seen.calls++;
	if (h != expected_handle)
		seen.bad_handle++;
	for (i = 0; i < n; i++) {
		seen.elements++;
		if (iov[i].dataBuffer == NULL && iov[i].readSize == 0)
			seen.null_buffers++;
		if (iov[i].sectionId.idLen < sizeof seen.last_id) {
			memcpy(seen.last_id, iov[i].sectionId.id, iov[i].sectionId.idLen);
			seen.last_id[iov[i].sectionId.idLen] = 0;
		}
		seen.last_size = iov[i].dataSize;
		seen.last_offset = iov[i].dataOffset;
	}
}

static void on_arrival(const SaCkptCheckpointHandleT h, SaCkptIOVectorElementT *iov, SaUint32T n)
{
	on_track(h, iov, n);
}

static void pause_ms(long ms)
{
	struct timespec ts = {0, 0};

	ts.tv_nsec = ms * 1000000L;
	nanosleep(&ts, NULL);
}

/* Dispatches until `elements` changes were reported or 2 s pass. */
static void wait_for(SaCkptHandleT lib, unsigned elements)
{
	SaSelectionObjectT fd;
	struct pollfd p;
	int i;

	if (!CHECK_EQ(saCkptSelectionObjectGet(lib, &fd), SA_AIS_OK))
		return;
	for (i = 0; i < 200 && seen.elements < elements; i++) {
		p.fd = (int)fd;
		p.events = POLLIN;
		p.revents = 0;
		if (poll(&p, 1, 10) > 0)
			CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_OK);
	}
}

int main(void)
{
	SaVersionT v3 = {'B', 2, 3}, v2 = {'B', 2, 2};
	SaCkptCallbacksT_2 cb2 = {NULL, NULL, on_track};
	SaCkptHandleT standby, writer, plain;
	SaCkptCheckpointHandleT sh, wh;
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ALL_REPLICAS, 4 * 64, SA_TIME_ONE_SECOND, 4, 64, 16};
	SaNameT name;
	unsigned char a_id[] = "a", b_id[] = "b";
	SaCkptSectionIdT a = {1, a_id}, b = {1, b_id};
	SaCkptSectionCreationAttributesT ca = {&a, SA_TIME_END}, cb = {&b, SA_TIME_END};
	SaCkptIOVectorElementT w = {{1, b_id}, (void *)"xyz", 3, 5, 0};
	SaUint32T err = 0;

	CHECK_START("track");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=ctest_track_%ld", (long)getpid());

	CHECK_EQ(saCkptInitialize_2(&standby, &cb2, &v3), SA_AIS_OK);
	CHECK_EQ(saCkptInitialize(&writer, NULL, &v2), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(writer, &name, &attrs, CRW, CK_TIMEOUT, &wh), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(standby, &name, NULL, SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE,
				      CK_TIMEOUT, &sh), SA_AIS_OK);
	expected_handle = sh;
	CHECK_EQ(saCkptTrackStop(standby), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptTrack(standby), SA_AIS_OK);

	/* Another handle's create with data, overwrite and write are reported. */
	CHECK_EQ(saCkptSectionCreate(wh, &ca, "0123456789", 10), SA_AIS_OK);
	wait_for(standby, 1);
	CHECK_INT(seen.elements, 1);
	CHECK(strcmp(seen.last_id, "a") == 0);
	CHECK_INT(seen.last_size, 10);
	CHECK_EQ(saCkptSectionCreate(wh, &cb, "bbbbbbbb", 8), SA_AIS_OK);
	CHECK_EQ(saCkptSectionOverwrite(wh, &a, "hello", 5), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointWrite(wh, &w, 1, &err), SA_AIS_OK);
	wait_for(standby, 4);
	CHECK_INT(seen.elements, 4);
	CHECK(strcmp(seen.last_id, "b") == 0);
	CHECK_INT(seen.last_size, 3);
	CHECK_INT(seen.last_offset, 5);
	CHECK_INT(seen.null_buffers, seen.elements);
	CHECK_INT(seen.bad_handle, 0);

	/* The standby's own writes are not reported to it. */
	CHECK_EQ(saCkptSectionOverwrite(sh, &a, "mine", 4), SA_AIS_OK);
	CHECK_EQ(saCkptSectionOverwrite(wh, &b, "theirs", 6), SA_AIS_OK);
	wait_for(standby, 5);
	CHECK_INT(seen.elements, 5);
	CHECK(strcmp(seen.last_id, "b") == 0);

	/* Stopped: nothing more. */
	CHECK_EQ(saCkptTrackStop(standby), SA_AIS_OK);
	CHECK_EQ(saCkptTrackStop(standby), SA_AIS_ERR_NOT_EXIST);
	pause_ms(50);
	CHECK_EQ(saCkptSectionOverwrite(wh, &b, "late", 4), SA_AIS_OK);
	wait_for(standby, 6);
	CHECK_INT(seen.elements, 5);

	/* Refusals. */
	/* (Initialize wrote B.02.03 back into v2.) */
	v2.releaseCode = 'B';
	v2.majorVersion = 2;
	v2.minorVersion = 2;
	CHECK_EQ(saCkptInitialize(&plain, NULL, &v2), SA_AIS_OK);
	CHECK_EQ(saCkptTrack(plain), SA_AIS_ERR_VERSION);
	v3.releaseCode = 'B';
	v3.majorVersion = 2;
	v3.minorVersion = 3;
	CHECK_EQ(saCkptFinalize(plain), SA_AIS_OK);
	CHECK_EQ(saCkptInitialize(&plain, NULL, &v3), SA_AIS_OK);
	CHECK_EQ(saCkptTrack(plain), SA_AIS_ERR_INIT);
	CHECK_EQ(saCkptTrackStop(plain), SA_AIS_ERR_INIT);
	CHECK_EQ(saCkptCheckpointTrack(sh), SA_AIS_ERR_NOT_SUPPORTED);
	CHECK_EQ(saCkptCheckpointTrackStop(sh), SA_AIS_ERR_NOT_SUPPORTED);
	CHECK_EQ(ncsCkptRegisterCkptArrivalCallback(plain, NULL), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptTrack(0), SA_AIS_ERR_BAD_HANDLE);

	/* The arrival callback (any version) turns notification on too. */
	{
		SaCkptCheckpointHandleT ph;
		CHECK_EQ(saCkptCheckpointOpen(plain, &name, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &ph),
			 SA_AIS_OK);
		expected_handle = ph;
		CHECK_EQ(ncsCkptRegisterCkptArrivalCallback(plain, on_arrival), SA_AIS_OK);
		pause_ms(50);
		CHECK_EQ(saCkptSectionOverwrite(wh, &a, "arrived", 7), SA_AIS_OK);
		wait_for(plain, 6);
		CHECK_INT(seen.elements, 6);
		CHECK(strcmp(seen.last_id, "a") == 0);
		CHECK_INT(seen.last_size, 7);
	}

	CHECK_EQ(saCkptFinalize(plain), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(standby), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(writer, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(writer), SA_AIS_OK);
	return CHECK_DONE();
}
