// Preloaded (`node --import`) into the hub processes a test starts (test/helpers/service.ts, `exitWithParent`).
// The test process holds the write end of our stdin; when it goes away — however it ends, SIGKILL included — the
// pipe closes and this process shuts down as on SIGTERM (graceful), and is forced out 5 s later.
const leave = () => {
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 5000).unref();
};
process.stdin.once('end', leave).once('error', leave).resume();
