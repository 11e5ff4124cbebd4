// Starts a real Unleash server for rollout's integration tests (normally via `scripts/services start`).
// Configuration comes from the environment; it listens on 127.0.0.1 only and never calls home.
//
//   DATABASE_URL            postgres://user:password@127.0.0.1:5432/unleash, or else
//   DATABASE_HOST, DATABASE_PORT, DATABASE_USERNAME, DATABASE_PASSWORD, DATABASE_NAME
//   PORT (or HTTP_PORT)     port to listen on, default 4242
//   UNLEASH_ADMIN_TOKEN     admin API token, `*:*.<secret>` (or INIT_ADMIN_API_TOKENS itself)
//   LOG_LEVEL               debug, info (default), warn, error; logs go to stdout
//
// Authentication stays in token mode ('open-source'), so a wrong token is answered 401.

// Read by Unleash while it builds its configuration: force them before it does.
process.env.SEND_TELEMETRY = 'false';
process.env.CHECK_VERSION = 'false';
if (process.env.UNLEASH_ADMIN_TOKEN) {
    process.env.INIT_ADMIN_API_TOKENS = process.env.UNLEASH_ADMIN_TOKEN;
}
if (!process.env.INIT_ADMIN_API_TOKENS) {
    console.error('start.mjs: set UNLEASH_ADMIN_TOKEN (`*:*.<secret>`) or INIT_ADMIN_API_TOKENS');
    process.exit(2);
}
if (!process.env.DATABASE_URL && !process.env.DATABASE_HOST) {
    console.error('start.mjs: set DATABASE_URL, or DATABASE_HOST and friends');
    process.exit(2);
}

const host = '127.0.0.1';
const port = Number.parseInt(process.env.PORT || process.env.HTTP_PORT || '4242', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error(`start.mjs: bad PORT ${process.env.PORT || process.env.HTTP_PORT}`);
    process.exit(2);
}

// Plain lines on stdout (Unleash's default logger colours them), at LOG_LEVEL or above.
const levels = ['debug', 'info', 'warn', 'error', 'fatal'];
const threshold = Math.max(0, levels.indexOf(process.env.LOG_LEVEL || 'info'));
const getLogger = (category) =>
    Object.fromEntries(
        levels.map((level, rank) => [
            level,
            rank < threshold
                ? () => {}
                : (...args) =>
                      console.log(new Date().toISOString(), level.toUpperCase(), `${category} -`, ...args),
        ]),
    );

// Imported only now: some of Unleash's defaults are read from the environment at import time.
const { start } = await import('unleash-server');

try {
    const unleash = await start({
        ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
        server: {
            host,
            port,
            unleashUrl: `http://${host}:${port}`,
            enableRequestLogger: process.env.REQUEST_LOGGER_ENABLE === 'true',
        },
        authentication: {
            type: 'open-source',
            enableApiToken: true,
            // No UI user with a well-known password: the admin API token is the only way in.
            createAdminUser: false,
        },
        versionCheck: { enable: false },
        getLogger,
    });
    console.log(`start.mjs: Unleash ${unleash.version} listening on http://${host}:${port}`);
} catch (error) {
    console.error('start.mjs: Unleash failed to start:', error);
    process.exit(1);
}
