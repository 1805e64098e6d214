/*
 * review_fork.c: a process that forks. The child inherits the parent's
 * handles (copies of the library's tables); whatever the child does with
 * them, and with its own new library instance, must not close, delete or
 * corrupt the parent's checkpoints (spec 3.5.3: a checkpoint is closed by
 * its opener's Close, Finalize or death; the child is another process).
 *
 * The parent opens a checkpoint with retention 0 (so it would vanish if the
 * child's calls counted as the parent's last close) and forks. The child
 *   - tries to finalize the inherited library handle: BAD_HANDLE, handles
 *     belong to the process that got them,
 *   - initializes its own instance, opens the checkpoint, overwrites the
 *     section, closes, finalizes, and exits.
 * Then the parent's handle still works and reads the child's data, and the
 * parent's selection object does not report callbacks it does not have
 * (spec 3.4.2: the selection object detects pending callbacks): after a
 * saCkptDispatch(SA_DISPATCH_ALL) it is not readable.
 */
#include "check.h"

#include <poll.h>
#include <sys/wait.h>

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static void sync_cb(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	(void)e;
}

static int child(const SaNameT *name, SaCkptHandleT inherited)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};

	ck_program = "review_fork (child)";
	/* Handles belong to the process that got them: a child's copies are
	   refused (README "Using it from C"). */
	CHECK_EQ(saCkptFinalize(inherited), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &ck),
		     SA_AIS_OK)) {
		CHECK_EQ(saCkptSectionOverwrite(ck, &id, "child", 5), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	}
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cbs = {NULL, sync_cb};
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck;
	SaCkptCheckpointCreationAttributesT a = {
		SA_CKPT_WR_ALL_REPLICAS, 2 * 16, 0, 2, 16, 8};
	SaCkptSectionIdT id = {1, (SaUint8T *)"s"};
	SaCkptSectionCreationAttributesT ca = {&id, SA_TIME_END};
	SaSelectionObjectT so;
	SaNameT name;
	char buf[16];
	SaCkptIOVectorElementT e;
	pid_t pid;
	int status = -1;
	struct pollfd p;

	CHECK_START("review_fork");
	name.length = (SaUint16T)snprintf((char *)name.value, sizeof name.value,
					  "safCkpt=review_fork_%ld", (long)getpid());
	CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK);
	CHECK_EQ(saCkptSelectionObjectGet(lib, &so), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, &name, &a, CRW, CK_TIMEOUT, &ck), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "parent", 6), SA_AIS_OK);

	pid = fork();
	if (pid == 0)
		_exit(child(&name, lib));
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		printf("    child status %#x\n", status);

	/* The parent's handle and checkpoint are intact. */
	memset(&e, 0, sizeof e);
	memset(buf, 0, sizeof buf);
	e.sectionId = id;
	e.dataBuffer = buf;
	e.dataSize = sizeof buf;
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(e.readSize, 5);
		CHECK(memcmp(buf, "child", 5) == 0);
	}
	CHECK_EQ(saCkptSectionOverwrite(ck, &id, "again", 5), SA_AIS_OK);

	/* No callback is pending in the parent: once the parent has
	   dispatched, its selection object is not readable (the child's
	   finalize of its copy wrote to the eventfd both processes share). */
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_OK);
	p.fd = (int)so;
	p.events = POLLIN;
	p.revents = 0;
	if (!CHECK(poll(&p, 1, 0) == 0))
		printf("    the parent's selection object stays readable with no callback pending\n");

	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	/* Retention 0: the parent's close was the last. */
	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
