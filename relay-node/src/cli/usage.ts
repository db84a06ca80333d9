import { configHelp } from '../config.ts';
import { VERSION } from '../version.ts';

/** `anode --help`: the commands, then every relay option (generated from the config schema). */
export function usage(): string {
  return `aNode ${VERSION}: real-time pub/sub, self-hosted relay and Cloudflare edge

Usage:
  anode relay [--port <n>] [--data-dir <dir>] [--config <file.json>] [options]
      run a relay node (prints "relay ready at <url>" once it serves)
  anode token --secret <s> [--subject <name>] [--pub <pattern>]... [--sub <pattern>]... [--src <pattern>]... [--audience <aud>]... [--expires 1h]
      print an HS256 token for a relay started with the same jwt_secret
      (the secret may come from ANODE_JWT_SECRET, or a file ANODE_JWT_SECRET_FILE names, instead:
      it then stays out of shell history)
  anode --help | --version

Relay options (each also ANODE_<KEY> in the environment or <key> in the JSON config file;
the secrets jwt_secret, admin_token, metrics_token, edge_link_secret and cassandra_password also
ANODE_<KEY>_FILE, naming a file that holds one; docs/configuration.md has the same table):
${configHelp()}
`;
}
