/*
 * bad_input.c: sizes no buffer can have, next to valid small buffers. The
 * library must refuse them with SA_AIS_ERR_INVALID_PARAM before touching any
 * memory (a crash or a sanitizer report fails the program), and leave the
 * checkpoint as it was.
 */
#include "check.h"

#include <stdint.h>

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ALL_REPLICAS, 2 * 64, SA_TIME_ONE_SECOND, 2, 64, 8};
	SaNameT name;
	unsigned char id_bytes[] = "s";
	SaCkptSectionIdT id = {1, id_bytes};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	char small[8] = "abcdefg";
	char out[8];
	SaCkptIOVectorElementT e;
	SaUint32T bad = 77;
	const SaSizeT huge[] = {UINT64_MAX, (SaSizeT)INT64_MAX + 1, UINT64_MAX - 4, 65};
	size_t i;

	CHECK_START("bad_input");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=ctest_bad_input_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "kept", 4), SA_AIS_OK);

	for (i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		printf("dataSize %llu\n", (unsigned long long)huge[i]);
		CHECK_EQ(saCkptSectionOverwrite(ck, &id, small, huge[i]), SA_AIS_ERR_INVALID_PARAM);
		CHECK_EQ(saCkptSectionCreate(ck, &ca, small, huge[i]), SA_AIS_ERR_INVALID_PARAM);

		e.sectionId = id;
		e.dataBuffer = small;
		e.dataSize = huge[i];
		e.dataOffset = 0;
		e.readSize = 0;
		bad = 77;
		CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &bad), SA_AIS_ERR_INVALID_PARAM);
		CHECK_INT(bad, 0);

		e.dataBuffer = out;
		e.dataSize = huge[i];
		bad = 77;
		CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, &bad), SA_AIS_ERR_INVALID_PARAM);
		CHECK_INT(bad, 0);
	}
	/* Offsets past any section. */
	e.sectionId = id;
	e.dataBuffer = small;
	e.dataSize = 1;
	e.dataOffset = UINT64_MAX;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, NULL), SA_AIS_ERR_INVALID_PARAM);
	/* A read there is INVALID_PARAM too (past the section's end, as in
	   OpenSAF and openais; offsets_isolation.c has the cases). */
	e.dataBuffer = out;
	e.readSize = 99;
	CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_ERR_INVALID_PARAM);
	/* An id length without bytes, bytes without a length. */
	{
		SaCkptSectionIdT no_bytes = {3, NULL}, no_len = {0, id_bytes};
		CHECK_EQ(saCkptSectionOverwrite(ck, &no_bytes, small, 1), SA_AIS_ERR_INVALID_PARAM);
		CHECK_EQ(saCkptSectionOverwrite(ck, &no_len, small, 1), SA_AIS_ERR_INVALID_PARAM);
		CHECK_EQ(saCkptSectionDelete(ck, &no_bytes), SA_AIS_ERR_INVALID_PARAM);
	}

	/* A read that fails hands out no memory: the buffer it allocated for an
	   earlier element is freed and its pointer is NULL again. */
	{
		unsigned char missing_bytes[] = "m";
		SaCkptIOVectorElementT two[2];

		memset(two, 0, sizeof two);
		two[0].sectionId = id;
		two[1].sectionId.idLen = 1;
		two[1].sectionId.id = missing_bytes;
		two[1].dataBuffer = out;
		two[1].dataSize = sizeof out;
		bad = 77;
		CHECK_EQ(saCkptCheckpointRead(ck, two, 2, &bad), SA_AIS_ERR_NOT_EXIST);
		CHECK_INT(bad, 1);
		CHECK(two[0].dataBuffer == NULL);
		CHECK_INT(two[0].readSize, 0);
	}

	/* The section is as it was. */
	e.sectionId = id;
	e.dataBuffer = out;
	e.dataSize = sizeof out;
	e.dataOffset = 0;
	e.readSize = 0;
	CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK);
	CHECK_INT(e.readSize, 4);
	CHECK(memcmp(out, "kept", 4) == 0);

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
