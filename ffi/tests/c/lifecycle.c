/*
 * lifecycle.c: saCkptInitialize (version negotiation, parameters),
 * saCkptSelectionObjectGet, saCkptDispatch and saCkptFinalize, and handles
 * that are finalized or were never issued.
 *
 * The library implements the B release with majors 1 and 2 and answers
 * B.02.03 (the version OpenSAF reports) whenever it reports a version.
 */
#include "check.h"

#include <poll.h>
#include <sys/select.h>
#include <fcntl.h>

#include <saCkpt.h>

static int version_is(const SaVersionT *v, char release, int major, int minor)
{
	return v->releaseCode == (SaUint8T)release &&
	       v->majorVersion == major && v->minorVersion == minor;
}

static void print_version(const char *what, const SaVersionT *v)
{
	printf("    %s: {'%c', %d, %d}\n", what, v->releaseCode,
	       v->majorVersion, v->minorVersion);
}

/* saCkptInitialize with *version = {release, major, minor} must return
   expected and leave *version at B.02.03. The handle, if any, is
   finalized. */
static void negotiate(char release, int major, int minor, SaAisErrorT expected)
{
	SaCkptHandleT h = 0;
	SaVersionT v;

	v.releaseCode = (SaUint8T)release;
	v.majorVersion = (SaUint8T)major;
	v.minorVersion = (SaUint8T)minor;
	printf("version {'%c', %d, %d}\n", release, major, minor);
	if (CHECK_EQ(saCkptInitialize(&h, NULL, &v), expected) &&
	    expected == SA_AIS_OK)
		CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);
	if (!CHECK(version_is(&v, 'B', 2, 3)))
		print_version("returned", &v);
}

static void versions(void)
{
	/* The spec: OK if the release is supported with a major >= the one
	   asked for; the highest major and minor come back. */
	negotiate('B', 1, 1, SA_AIS_OK);
	negotiate('B', 1, 0, SA_AIS_OK);
	negotiate('B', 2, 2, SA_AIS_OK);
	negotiate('B', 2, 0, SA_AIS_OK);	/* the minor asked for is ignored */
	negotiate('B', 2, 9, SA_AIS_OK);
	/* Unsupported release: ERR_VERSION with the nearest supported one,
	   B (higher than A, lower than C), at its highest major and minor. */
	negotiate('A', 1, 1, SA_AIS_ERR_VERSION);
	negotiate('C', 1, 1, SA_AIS_ERR_VERSION);
	/* Supported release, no major that high. */
	negotiate('B', 3, 0, SA_AIS_ERR_VERSION);
	negotiate('B', 255, 0, SA_AIS_ERR_VERSION);
}

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT ck,
		    SaAisErrorT err)
{
	(void)inv;
	(void)ck;
	(void)err;
}

static void sync_cb(SaInvocationT inv, SaAisErrorT err)
{
	(void)inv;
	(void)err;
}

static void initialize_params(void)
{
	SaCkptHandleT h = 0, h2 = 0;
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT none = { NULL, NULL };
	SaCkptCallbacksT both = { open_cb, sync_cb };

	CHECK_EQ(saCkptInitialize(NULL, NULL, &v), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptInitialize(&h, NULL, NULL), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptInitialize(NULL, &both, NULL), SA_AIS_ERR_INVALID_PARAM);

	/* NULL callbacks, a callbacks struct of NULLs, and a full one. */
	if (CHECK_EQ(saCkptInitialize(&h, NULL, &v), SA_AIS_OK))
		CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);
	v = (SaVersionT)CK_VERSION_INIT;
	if (CHECK_EQ(saCkptInitialize(&h, &none, &v), SA_AIS_OK))
		CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);
	v = (SaVersionT)CK_VERSION_INIT;
	if (CHECK_EQ(saCkptInitialize(&h, &both, &v), SA_AIS_OK))
		CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);

	/* Two initializations are two handles; finalizing one leaves the
	   other usable. */
	v = (SaVersionT)CK_VERSION_INIT;
	CHECK_EQ(saCkptInitialize(&h, NULL, &v), SA_AIS_OK);
	v = (SaVersionT)CK_VERSION_INIT;
	CHECK_EQ(saCkptInitialize(&h2, NULL, &v), SA_AIS_OK);
	CHECK(h != h2);
	CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);
	CHECK_EQ(saCkptDispatch(h2, SA_DISPATCH_ALL), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(h2), SA_AIS_OK);
}

/* The fd is open, select() and poll() take it, and it is not readable. */
static void selection_object_idle(SaSelectionObjectT so)
{
	int fd = (int)so;
	struct pollfd pfd;
	fd_set rd;
	struct timeval tv;

	if (!CHECK(so == (SaSelectionObjectT)fd && fd >= 0))
		return;
	CHECK(fcntl(fd, F_GETFD) != -1);

	pfd.fd = fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	CHECK_INT(poll(&pfd, 1, 0), 0);
	CHECK_INT(pfd.revents & (POLLIN | POLLNVAL | POLLERR), 0);

	if (CHECK(fd < FD_SETSIZE)) {
		FD_ZERO(&rd);
		FD_SET(fd, &rd);
		tv.tv_sec = 0;
		tv.tv_usec = 10000;
		CHECK_INT(select(fd + 1, &rd, NULL, NULL, &tv), 0);
		CHECK(!FD_ISSET(fd, &rd));
	}
}

static void selection_and_dispatch(void)
{
	SaCkptHandleT h = 0;
	SaVersionT v = CK_VERSION_INIT;
	SaSelectionObjectT so = 0, so2 = 0;

	if (!CHECK_EQ(saCkptInitialize(&h, NULL, &v), SA_AIS_OK))
		return;

	CHECK_EQ(saCkptSelectionObjectGet(h, &so), SA_AIS_OK);
	selection_object_idle(so);
	/* The same object until Finalize. */
	CHECK_EQ(saCkptSelectionObjectGet(h, &so2), SA_AIS_OK);
	CHECK_INT(so2, so);
	CHECK_EQ(saCkptSelectionObjectGet(h, NULL), SA_AIS_ERR_INVALID_PARAM);

	CHECK_EQ(saCkptDispatch(h, (SaDispatchFlagsT)0),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptDispatch(h, (SaDispatchFlagsT)4),
		 SA_AIS_ERR_INVALID_PARAM);
	/* Nothing pending: ONE and ALL return at once. */
	CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK);
	CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_ONE), SA_AIS_OK);
	selection_object_idle(so);

	CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);
}

static void finalized_handle(void)
{
	SaCkptHandleT h = 0;
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT both = { open_cb, sync_cb };
	SaSelectionObjectT so = 0;
	SaCkptCheckpointHandleT ck = 0;
	SaCkptCheckpointCreationAttributesT attrs;
	SaNameT name;

	memset(&attrs, 0, sizeof attrs);
	attrs.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	attrs.checkpointSize = 1024;
	attrs.retentionDuration = 0;
	attrs.maxSections = 1;
	attrs.maxSectionSize = 1024;
	attrs.maxSectionIdSize = 8;
	ck_name(&name, "lifecycle", "fin");

	if (!CHECK_EQ(saCkptInitialize(&h, &both, &v), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptFinalize(h), SA_AIS_OK);

	CHECK_EQ(saCkptSelectionObjectGet(h, &so), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_ALL), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_ONE), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptDispatch(h, SA_DISPATCH_BLOCKING),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointOpen(h, &name, &attrs,
				      SA_CKPT_CHECKPOINT_CREATE |
				      SA_CKPT_CHECKPOINT_READ |
				      SA_CKPT_CHECKPOINT_WRITE,
				      CK_TIMEOUT, &ck),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointOpenAsync(h, 1, &name, &attrs,
					   SA_CKPT_CHECKPOINT_CREATE |
					   SA_CKPT_CHECKPOINT_READ |
					   SA_CKPT_CHECKPOINT_WRITE),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointUnlink(h, &name), SA_AIS_ERR_BAD_HANDLE);
	/* Double finalize. */
	CHECK_EQ(saCkptFinalize(h), SA_AIS_ERR_BAD_HANDLE);
}

static void garbage_handles(void)
{
	const SaCkptHandleT bad[] = { 0, 12345, ~0ULL };
	SaSelectionObjectT so = 0;
	SaCkptCheckpointHandleT ck = 0;
	SaNameT name;
	size_t i;

	ck_name(&name, "lifecycle", "garbage");
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		printf("handle %llu\n", (unsigned long long)bad[i]);
		CHECK_EQ(saCkptSelectionObjectGet(bad[i], &so),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptDispatch(bad[i], SA_DISPATCH_ALL),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptDispatch(bad[i], SA_DISPATCH_ONE),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptDispatch(bad[i], SA_DISPATCH_BLOCKING),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointOpen(bad[i], &name, NULL,
					      SA_CKPT_CHECKPOINT_READ,
					      CK_TIMEOUT, &ck),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointUnlink(bad[i], &name),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptFinalize(bad[i]), SA_AIS_ERR_BAD_HANDLE);
	}
}

int main(void)
{
	CHECK_START("lifecycle");
	versions();
	initialize_params();
	selection_and_dispatch();
	finalized_handle();
	garbage_handles();
	return CHECK_DONE();
}
