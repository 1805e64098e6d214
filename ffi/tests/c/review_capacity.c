/*
 * review_capacity.c: creation attributes the spec allows but that exceed
 * what this implementation can hold are "insufficient resources", not "a
 * parameter is not set correctly".
 *
 * Spec 3.5.1 lists the INVALID_PARAM cases of saCkptCheckpointOpen:
 * checkpointSize > maxSections * maxSectionSize, CREATE without
 * attributes, attributes without CREATE. NO_RESOURCES: "There are
 * insufficient resources (other than memory)". The ckpt crate itself maps
 * these attributes (AttributesError::BeyondCapacity) to
 * OpenError::NoResources (ckpt/src/lib.rs, Service::open); libSaCkpt's
 * open_arguments() turns every validation failure into INVALID_PARAM.
 *
 * Valid per the spec (3.3.2.2) and refused here:
 *   - maxSectionIdSize 8192 (an idLen is 16 bits: ids up to 65535 bytes);
 *   - maxSections 2^23 sections of 1 byte, checkpointSize 1024.
 * Either open may succeed or fail with NO_RESOURCES; INVALID_PARAM is
 * wrong, and so is BAD_FLAGS or anything else.
 */
#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static void try_open(SaCkptHandleT lib, const char *tag, SaCkptCheckpointCreationAttributesT *a)
{
	SaNameT name;
	SaCkptCheckpointHandleT ck;
	SaAisErrorT e;

	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_capacity_%ld_%s", (long)getpid(), tag);
	e = saCkptCheckpointOpen(lib, &name, a, CRW, CK_TIMEOUT, &ck);
	printf("%s: %s\n", tag, ck_err_name(e));
	if (!CHECK(e == SA_AIS_OK || e == SA_AIS_ERR_NO_RESOURCES))
		printf("    (%s: expected SA_AIS_OK or SA_AIS_ERR_NO_RESOURCES)\n", tag);
	if (e == SA_AIS_OK) {
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	}
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointCreationAttributesT a;

	CHECK_START("review_capacity");
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);

	memset(&a, 0, sizeof a);
	a.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	a.checkpointSize = 4 * 64;
	a.retentionDuration = 0;
	a.maxSections = 4;
	a.maxSectionSize = 64;
	a.maxSectionIdSize = 8192;
	try_open(lib, "long_ids", &a);

	a.maxSectionIdSize = 8;
	a.maxSections = 1u << 23;
	a.maxSectionSize = 1;
	a.checkpointSize = 1024;
	try_open(lib, "many_sections", &a);

	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
