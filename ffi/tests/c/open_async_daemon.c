/*
 * open_async_daemon.c: saCkptCheckpointOpenAsync returns at once even when
 * the open waits for the node daemon (a checkpoint this host does not hold:
 * the daemon may have to bring its replica from another node), and the
 * outcome comes in the callback. A child process stands in for the daemon
 * on $CKPT_DIR/.ckptd.sock: it takes the request and answers, a second
 * later, that no peer offers the checkpoint.
 */
#include "check.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <saCkpt.h>

#define ANSWER_AFTER_MS 1000

static int calls;
static SaAisErrorT got;

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT ck,
		    SaAisErrorT err)
{
	(void)inv;
	(void)ck;
	calls++;
	got = err;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* The stand-in daemon: each request is read (one line) and answered
   `want unknown` after ANSWER_AFTER_MS. */
static pid_t fake_daemon(const char *path)
{
	struct sockaddr_un addr;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid;

	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	if (fd < 0 || strlen(path) >= sizeof addr.sun_path)
		return -1;
	strcpy(addr.sun_path, path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
	    listen(fd, 8) != 0)
		return -1;
	pid = fork();
	if (pid != 0) {
		close(fd);
		return pid;
	}
	for (;;) {
		char buf[4096];
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			_exit(0);
		(void)read(c, buf, sizeof buf);
		ck_sleep_ms(ANSWER_AFTER_MS);
		(void)write(c, "want unknown\n", 13);
		close(c);
	}
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCallbacksT cb = { open_cb, NULL };
	SaCkptHandleT lib;
	SaSelectionObjectT so;
	SaNameT name;
	struct timespec t0;
	struct pollfd pfd;
	char path[4096];
	const char *dir = getenv("CKPT_DIR");
	pid_t daemon;
	long took;

	CHECK_START("open_async_daemon");
	if (!CHECK(dir != NULL))
		return CHECK_DONE();
	/* The directory may not be there yet (the library makes it). */
	(void)mkdir(dir, 0700);
	snprintf(path, sizeof path, "%s/.ckptd.sock", dir);
	daemon = fake_daemon(path);
	if (!CHECK(daemon > 0))
		return CHECK_DONE();
	ck_name(&name, "open_async_daemon", "far");
	CHECK_EQ(saCkptInitialize(&lib, &cb, &v), SA_AIS_OK);
	CHECK_EQ(saCkptSelectionObjectGet(lib, &so), SA_AIS_OK);

	/* Not on this host: the library asks the daemon, which answers a
	   second later; the call does not wait for it. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(saCkptCheckpointOpenAsync(lib, 5, &name, NULL,
					   SA_CKPT_CHECKPOINT_READ),
		 SA_AIS_OK);
	took = ms_since(&t0);
	if (!CHECK(took < ANSWER_AFTER_MS / 2))
		printf("    saCkptCheckpointOpenAsync took %ld ms\n", took);
	CHECK_INT(calls, 0);

	/* The outcome: no peer offers it, and it is not here. */
	pfd.fd = (int)so;
	pfd.events = POLLIN;
	pfd.revents = 0;
	CHECK_INT(poll(&pfd, 1, 10000), 1);
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ONE), SA_AIS_OK);
	CHECK_INT(calls, 1);
	CHECK_EQ(got, SA_AIS_ERR_NOT_EXIST);
	CHECK(ms_since(&t0) >= ANSWER_AFTER_MS);

	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	kill(daemon, SIGKILL);
	waitpid(daemon, NULL, 0);
	unlink(path);
	return CHECK_DONE();
}
