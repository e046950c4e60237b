// A real, certified OpenID provider (npm oidc-provider) on loopback, for
// the OIDC tests (tests/api/oidc_provider.rs). Configured from the
// environment:
//   OP_PORT           where it listens (127.0.0.1)
//   RP_REDIRECT_URI   the frontend callback Chronos sends people back to
//   RP_BACKCHANNEL    Chronos's /auth/backchannel-logout
//   RP_LOGOUT_URI     where RP-initiated logout may return (the frontend)
// It prints "listening" when ready. Test-only helpers, outside the OIDC
// surface: GET /__test/refresh-tokens (every refresh token it issued) and
// GET /__test/events (back-channel deliveries, revocations).
import Provider from "oidc-provider";

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;

const refreshTokens = [];
const events = [];

const provider = new Provider(issuer, {
  clients: [{
    client_id: "chronos",
    client_secret: "chronos provider test secret",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    redirect_uris: [process.env.RP_REDIRECT_URI],
    post_logout_redirect_uris: [process.env.RP_LOGOUT_URI],
    backchannel_logout_uri: process.env.RP_BACKCHANNEL,
    backchannel_logout_session_required: true,
    token_endpoint_auth_method: "client_secret_basic",
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: `Person ${id}` };
      },
    };
  },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  pkce: { required: () => true },
  cookies: { keys: ["chronos oidc-provider test cookie key"] },
  // The provider refuses to call loopback addresses (SSRF guard); in this
  // test, loopback is where Chronos is.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

provider.on("refresh_token.saved", (token) => refreshTokens.push(token.jti));
provider.on("grant.revoked", (ctx, grantId) => events.push({ event: "grant.revoked", grantId }));
provider.on("backchannel.success", (ctx, client, accountId, sid) =>
  events.push({ event: "backchannel.success", accountId, sid }));
provider.on("backchannel.error", (ctx, error, client, accountId, sid) =>
  events.push({ event: "backchannel.error", message: error.message, accountId, sid }));
provider.on("server_error", (ctx, error) => console.error("provider error:", error));

provider.use(async (ctx, next) => {
  if (ctx.path === "/__test/refresh-tokens") {
    ctx.body = refreshTokens;
    return;
  }
  if (ctx.path === "/__test/events") {
    ctx.body = events;
    return;
  }
  await next();
});

provider.listen(port, "127.0.0.1", () => console.log("listening"));
