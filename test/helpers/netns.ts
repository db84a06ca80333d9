import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A small NAT lab in Linux network namespaces, for the mesh's NAT-traversal test:
 *
 *   <p>-pub: the "internet", a bridge at 203.0.113.1/24 (TEST-NET-3, routed nowhere)
 *   <p>-ra, <p>-rb: two routers, WAN 203.0.113.2 and .3, masquerading (nftables) their LANs
 *   <p>-a behind ra (192.168.10.2), <p>-b behind rb (192.168.20.2)
 *
 * Nothing here has a route to the machine's real network: every address lives only inside the
 * namespaces this helper creates, and `destroy` deletes them. A process inside is started with
 * `ip netns exec`; the test reaches its HTTP API through a Unix socket (path sockets are not
 * namespaced) that a small forwarder inside the namespace connects to 127.0.0.1:<port>.
 */
export interface NatLab {
  pub: string;
  a: string;
  b: string;
  run(ns: string, args: string[], log: string[]): ChildProcess;
  /** Forward a Unix socket at `path` to 127.0.0.1:`port` inside `ns`. */
  forward(ns: string, path: string, port: number): Promise<ChildProcess>;
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** Why the lab cannot be built here (not root, no `ip netns`, no `nft`), or undefined when it can. */
export function natLabUnavailable(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux';
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs nftables (apt-get install nftables)';
  }
  const probe = `anprobe${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
  } catch {
    return 'cannot create network namespaces here';
  }
  return undefined;
}

const FORWARDER = `
const net = require('node:net');
const [path, port] = process.argv.slice(1);
net.createServer((client) => {
  const upstream = net.connect(Number(port), '127.0.0.1');
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
}).listen(path, () => process.stdout.write('forwarding\\n'));
`;

export function createNatLab(): NatLab {
  const p = `an${process.pid % 100000}`;
  const ns = { pub: `${p}-pub`, ra: `${p}-ra`, rb: `${p}-rb`, a: `${p}-a`, b: `${p}-b` };
  const all = Object.values(ns);
  const destroy = () => {
    for (const name of all) {
      try {
        ip('netns', 'del', name);
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', destroy);
  try {
    for (const name of all) {
      ip('netns', 'add', name);
      ip('-n', name, 'link', 'set', 'lo', 'up');
    }
    ip('-n', ns.pub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', ns.pub, 'addr', 'add', '203.0.113.1/24', 'dev', 'br0');
    ip('-n', ns.pub, 'link', 'set', 'br0', 'up');
    const site = (router: string, host: string, tag: string, wan: string, lan: number) => {
      ip('link', 'add', `${p}${tag}w`, 'type', 'veth', 'peer', 'name', `${p}${tag}p`);
      ip('link', 'set', `${p}${tag}w`, 'netns', router);
      ip('link', 'set', `${p}${tag}p`, 'netns', ns.pub);
      ip('-n', ns.pub, 'link', 'set', `${p}${tag}p`, 'master', 'br0', 'up');
      ip('-n', router, 'addr', 'add', `${wan}/24`, 'dev', `${p}${tag}w`);
      ip('-n', router, 'link', 'set', `${p}${tag}w`, 'up');
      ip('link', 'add', `${p}${tag}l`, 'type', 'veth', 'peer', 'name', `${p}${tag}h`);
      ip('link', 'set', `${p}${tag}l`, 'netns', router);
      ip('link', 'set', `${p}${tag}h`, 'netns', host);
      ip('-n', router, 'addr', 'add', `192.168.${lan}.1/24`, 'dev', `${p}${tag}l`);
      ip('-n', router, 'link', 'set', `${p}${tag}l`, 'up');
      ip('-n', host, 'addr', 'add', `192.168.${lan}.2/24`, 'dev', `${p}${tag}h`);
      ip('-n', host, 'link', 'set', `${p}${tag}h`, 'up');
      ip('-n', host, 'route', 'add', 'default', 'via', `192.168.${lan}.1`);
      execFileSync('ip', ['netns', 'exec', router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      execFileSync('ip', ['netns', 'exec', router, 'nft', '-f', '-'], {
        // Masquerade the LAN; drop unsolicited packets to the router itself, as a home router's
        // firewall does (they must not leave conntrack entries that would make it pick
        // different ports for the LAN's own flows later, which defeats hole punching).
        input: [
          'table ip nat {',
          ` chain post { type nat hook postrouting priority srcnat; oifname "${p}${tag}w" masquerade; }`,
          '}',
          'table ip filter {',
          ` chain input { type filter hook input priority filter; iifname "${p}${tag}w" ct state new drop; }`,
          '}',
          '',
        ].join('\n'),
      });
    };
    site(ns.ra, ns.a, 'a', '203.0.113.2', 10);
    site(ns.rb, ns.b, 'b', '203.0.113.3', 20);
  } catch (error) {
    destroy();
    throw error;
  }

  const run = (name: string, args: string[], log: string[]) => {
    const child = spawn('ip', ['netns', 'exec', name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    return child;
  };

  return {
    pub: ns.pub,
    a: ns.a,
    b: ns.b,
    run,
    async forward(name, path, port) {
      const log: string[] = [];
      const child = run(name, [process.execPath, '-e', FORWARDER, path, String(port)], log);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`forwarder did not start: ${log.join('')}`)), 10_000);
        child.stdout?.on('data', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return child;
    },
    destroy,
  };
}

export const ANODE_CLI = fileURLToPath(new URL('../../relay-node/bin/anode.ts', import.meta.url));
export const socketIn = (dir: string, name: string) => join(dir, `${name}.sock`);
