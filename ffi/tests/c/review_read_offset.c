/*
 * review_read_offset.c: in the strict (default) profile a read is limited
 * by what the spec limits: dataSize <= maxSectionSize (spec 3.7.3, "The
 * size is at most maxSectionSize"). dataOffset + dataSize past
 * maxSectionSize is not an error in the spec: the section never holds more
 * than maxSectionSize bytes, so such a read simply reads less (readSize).
 * Refusing it is OpenSAF's behaviour (reference 2.3, "Read dataSize or
 * dataOffset+dataSize > maxSectionSize (non-NULL buffer)": spec "—",
 * OpenSAF INVALID_PARAM), which README "Using it from C" reserves for
 * CKPT_SA_PROFILE=opensaf ("The default is the spec").
 *
 * The common idiom: a buffer of maxSectionSize bytes, reading the section
 * after a 4-byte header.
 */
#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define MAX_SIZE 64

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ALL_REPLICAS, 4 * MAX_SIZE, 0, 4, MAX_SIZE, 8};
	SaNameT name;
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	char buf[MAX_SIZE];
	SaCkptIOVectorElementT e;
	SaUint32T idx = 77;

	CHECK_START("review_read_offset");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_read_offset_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, &name, &a, CRW, CK_TIMEOUT, &ck), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "HDR:payload-16-bytes", 20), SA_AIS_OK);

	memset(&e, 0, sizeof e);
	memset(buf, 0, sizeof buf);
	e.sectionId = id;
	e.dataBuffer = buf;
	e.dataSize = MAX_SIZE;	/* at most maxSectionSize: allowed */
	e.dataOffset = 4;
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, &idx), SA_AIS_OK)) {
		CHECK_INT(e.readSize, 16);
		CHECK(memcmp(buf, "payload-16-bytes", 16) == 0);
	}

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
