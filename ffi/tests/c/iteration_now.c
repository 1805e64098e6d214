/*
 * iteration_now.c: an iteration describes each section as it is when
 * saCkptSectionIterationNext returns it (as OpenSAF answers each Next),
 * and a section deleted after initialize is not returned.
 */
#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ALL_REPLICAS, 4 * 64, SA_TIME_ONE_SECOND, 4, 64, 8};
	SaNameT name;
	unsigned char a_id[] = "a", b_id[] = "b";
	SaCkptSectionIdT a = {1, a_id}, b = {1, b_id};
	SaCkptSectionCreationAttributesT ca = {&a, SA_TIME_END}, cb = {&b, SA_TIME_END};
	SaCkptSectionIterationHandleT it;
	SaCkptSectionDescriptorT d;
	SaTimeT later = ck_now() + 3600 * SA_TIME_ONE_SECOND;

	CHECK_START("iteration_now");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=ctest_iteration_now_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "1", 1), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &cb, "22", 2), SA_AIS_OK);

	CHECK_EQ(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, &it), SA_AIS_OK);
	CHECK_EQ(saCkptSectionOverwrite(ck, &a, "longer", 6), SA_AIS_OK);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, &a, later), SA_AIS_OK);
	CHECK_EQ(saCkptSectionDelete(ck, &b), SA_AIS_OK);
	if (CHECK_EQ(saCkptSectionIterationNext(it, &d), SA_AIS_OK)) {
		CHECK_INT(d.sectionId.idLen, 1);
		CHECK(d.sectionId.id != NULL && d.sectionId.id[0] == 'a');
		CHECK_INT(d.sectionSize, 6);
		CHECK_INT(d.expirationTime, later);
	}
	CHECK_EQ(saCkptSectionIterationNext(it, &d), SA_AIS_ERR_NO_SECTIONS);
	CHECK_EQ(saCkptSectionIterationFinalize(it), SA_AIS_OK);

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
