/*
 * b01_free.c: a B.01.01 caller (no saCkptSectionIdFree, no
 * saCkptIOVectorElementDataFree in its header) releases the memory the
 * library hands out with plain free(): generated section ids and read
 * buffers the library allocated. Under valgrind (CI) a mismatched free or a
 * leak fails the program.
 */
#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

int main(void)
{
	SaVersionT v = {'B', 1, 1};
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ALL_REPLICAS, 4 * 64, SA_TIME_ONE_SECOND, 4, 64, 8};
	SaNameT name;
	SaCkptSectionIdT gen = SA_CKPT_GENERATED_SECTION_ID;
	SaCkptSectionCreationAttributesT ca = {&gen, SA_TIME_END};
	SaCkptIOVectorElementT e;
	int i;

	CHECK_START("b01_free");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=ctest_b01_free_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	for (i = 0; i < 3; i++) {
		gen.idLen = 0;
		gen.id = NULL;
		if (!CHECK_EQ(saCkptSectionCreate(ck, &ca, "payload", 7), SA_AIS_OK))
			break;
		CHECK(gen.idLen > 0 && gen.id != NULL);
		memset(&e, 0, sizeof e);
		e.sectionId = gen;
		e.dataBuffer = NULL; /* the library allocates */
		if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK)) {
			CHECK_INT(e.readSize, 7);
			CHECK(memcmp(e.dataBuffer, "payload", 7) == 0);
			free(e.dataBuffer);
		}
		CHECK_EQ(saCkptSectionDelete(ck, &gen), SA_AIS_OK);
		free(gen.id);
	}
	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
