// A real OpenID Connect provider (node's oidc-provider) on 127.0.0.1, for tests/test_sso.py only.
// Usage: node provider.mjs PORT CONFIG.json
//   CONFIG: {"client_id", "client_secret", "redirect_uri", "accounts": {"alice": {"groups": [...]}}}
// Its development login form accepts any password for the accounts named in CONFIG; an account's
// groups are read from CONFIG at every login, so a test can change them between logins.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, configPath] = process.argv.slice(2);
const config = () => JSON.parse(readFileSync(configPath, 'utf8'));
const { client_id, client_secret, redirect_uri } = config();

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{ client_id, client_secret, redirect_uris: [redirect_uri], grant_types: ['authorization_code'], response_types: ['code'] }],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  async findAccount(ctx, id) {
    const account = config().accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@bank.example`, email_verified: true, preferred_username: id, name: id, groups: account.groups };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['regqa-test-only'] },
  pkce: { required: () => false },
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => console.log(`ready http://127.0.0.1:${port}`));
