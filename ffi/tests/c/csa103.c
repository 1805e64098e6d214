/*
 * csa103.c: the csa103 checkpointing tutorial as two processes.
 *
 * Both processes initialize the library with open and synchronize
 * callbacks, open (or create) the checkpoint "safCkpt=csa103Ckpt_<pid>"
 * (WR_ACTIVE_REPLICA | COLLOCATED, two 4-byte sections) and run the
 * tutorial's dispatch loop on the selection object with select().
 *
 * The child is the active: it sets itself active replica, then counts,
 * overwriting (creating at first) the section "seq" with each number in
 * network byte order, asking for an asynchronous synchronize after each
 * write and dispatching its callbacks from the select() loop. After each
 * committed write it reports the number on a pipe.
 *
 * The parent is the standby. When the active has committed at least 2000
 * numbers it kills it with SIGKILL, at an arbitrary point of its loop. It
 * then takes over as the tutorial's standby does on failover: it becomes
 * the active replica, reads the last number from the checkpoint and goes
 * on counting. Nothing may be lost: the checkpoint holds at least the last
 * number the active reported (at most one more: a write that committed
 * before its report), and the standby's own writes continue from it.
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/select.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <saCkpt.h>

static SaCkptHandleT lib;
static SaCkptCheckpointHandleT ckpt;
static SaNameT ckpt_name;
static unsigned char sid_bytes[] = "seq";
static SaCkptSectionIdT sid = {3, sid_bytes};
static unsigned long synced;

static void open_done(SaInvocationT inv, SaCkptCheckpointHandleT h, SaAisErrorT e)
{
	(void)inv;
	(void)h;
	(void)e;
}

static void sync_done(SaInvocationT inv, SaAisErrorT e)
{
	(void)inv;
	if (e == SA_AIS_OK)
		synced++;
}

static SaAisErrorT checkpoint_initialize(void)
{
	SaVersionT version = {'B', 1, 1};
	SaCkptCallbacksT callbacks;
	SaCkptCheckpointCreationAttributesT attrs;
	SaAisErrorT rc;

	callbacks.saCkptCheckpointOpenCallback = open_done;
	callbacks.saCkptCheckpointSynchronizeCallback = sync_done;
	rc = saCkptInitialize(&lib, &callbacks, &version);
	if (rc != SA_AIS_OK)
		return rc;
	attrs.creationFlags = SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED;
	attrs.checkpointSize = 2 * sizeof(uint32_t);
	attrs.retentionDuration = SA_TIME_ONE_SECOND;
	attrs.maxSections = 2;
	attrs.maxSectionSize = sizeof(uint32_t);
	attrs.maxSectionIdSize = 64;
	return saCkptCheckpointOpen(lib, &ckpt_name, &attrs,
				    SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE |
					    SA_CKPT_CHECKPOINT_CREATE,
				    CK_TIMEOUT, &ckpt);
}

static SaAisErrorT write_seq(uint32_t seq)
{
	uint32_t net = htonl(seq);
	SaAisErrorT rc = saCkptSectionOverwrite(ckpt, &sid, &net, sizeof net);
	if (rc == SA_AIS_ERR_NOT_EXIST) {
		SaCkptSectionCreationAttributesT cr;
		cr.expirationTime = SA_TIME_END;
		cr.sectionId = &sid;
		rc = saCkptSectionCreate(ckpt, &cr, &net, sizeof net);
	}
	if (rc == SA_AIS_OK)
		rc = saCkptCheckpointSynchronizeAsync(ckpt, seq);
	return rc;
}

/* The last number in the checkpoint; 0 with NOT_EXIST if none yet. */
static SaAisErrorT read_seq(uint32_t *seq)
{
	uint32_t net = 0xffffffffu;
	SaUint32T err_idx = 0;
	SaCkptIOVectorElementT iov;
	SaAisErrorT rc;

	iov.sectionId = sid;
	iov.dataBuffer = &net;
	iov.dataSize = sizeof net;
	iov.dataOffset = 0;
	iov.readSize = 0;
	rc = saCkptCheckpointRead(ckpt, &iov, 1, &err_idx);
	*seq = rc == SA_AIS_OK ? ntohl(net) : 0;
	return rc;
}

/* The tutorial's dispatch step: wait up to `us` for the selection object,
   dispatch what is pending. */
static int dispatch(long us)
{
	SaSelectionObjectT fd;
	fd_set read_fds;
	struct timeval tv;
	int n;

	if (saCkptSelectionObjectGet(lib, &fd) != SA_AIS_OK)
		return -1;
	FD_ZERO(&read_fds);
	FD_SET((int)fd, &read_fds);
	tv.tv_sec = 0;
	tv.tv_usec = us;
	n = select((int)fd + 1, &read_fds, NULL, NULL, &tv);
	if (n < 0 && errno != EINTR)
		return -1;
	if (n > 0 && FD_ISSET((int)fd, &read_fds))
		return saCkptDispatch(lib, SA_DISPATCH_ALL) == SA_AIS_OK ? 0 : -1;
	return 0;
}

static void active(int report)
{
	uint32_t seq = 0;

	if (checkpoint_initialize() != SA_AIS_OK || saCkptActiveReplicaSet(ckpt) != SA_AIS_OK)
		_exit(2);
	for (;;) {
		seq++;
		if (write_seq(seq) != SA_AIS_OK)
			_exit(3);
		if (write(report, &seq, sizeof seq) != (ssize_t)sizeof seq)
			_exit(4);
		if (dispatch(0) != 0)
			_exit(5);
	}
}

int main(void)
{
	int fds[2];
	pid_t child;
	uint32_t reported = 0, got, in_ckpt = 0, seq;
	int status;
	unsigned long i;

	CHECK_START("csa103");
	ckpt_name.length = (SaUint16T)snprintf((char *)ckpt_name.value,
					       sizeof ckpt_name.value,
					       "safCkpt=csa103Ckpt_%ld", (long)getpid());
	if (!CHECK(pipe(fds) == 0))
		return CHECK_DONE();
	child = fork();
	if (child == 0) {
		close(fds[0]);
		active(fds[1]);
	}
	close(fds[1]);
	if (!CHECK(child > 0))
		return CHECK_DONE();

	/* The standby: initialized and open beside the active, dispatching. */
	CHECK_EQ(checkpoint_initialize(), SA_AIS_OK);
	while (reported < 2000 && read(fds[0], &got, sizeof got) == (ssize_t)sizeof got) {
		reported = got;
		CHECK(dispatch(0) == 0);
	}
	CHECK(reported >= 2000);
	kill(child, SIGKILL);
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Reports written before the kill. */
	while (read(fds[0], &got, sizeof got) == (ssize_t)sizeof got)
		reported = got;

	/* Failover: take over, recover, continue. */
	CHECK_EQ(saCkptActiveReplicaSet(ckpt), SA_AIS_OK);
	CHECK_EQ(read_seq(&in_ckpt), SA_AIS_OK);
	printf("csa103: the active reported %u, the checkpoint holds %u\n",
	       (unsigned)reported, (unsigned)in_ckpt);
	CHECK(in_ckpt == reported || in_ckpt == reported + 1);
	seq = in_ckpt;
	for (i = 0; i < 1000; i++) {
		CHECK_EQ(write_seq(++seq), SA_AIS_OK);
		CHECK(dispatch(0) == 0);
	}
	CHECK_EQ(read_seq(&got), SA_AIS_OK);
	CHECK_INT(got, in_ckpt + 1000);
	/* The standby's own synchronize callbacks arrived through dispatch. */
	for (i = 0; synced < 1000 && i < 100; i++)
		CHECK(dispatch(10000) == 0);
	CHECK_INT(synced, 1000);

	CHECK_EQ(saCkptCheckpointClose(ckpt), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, &ckpt_name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
