import { execFileSync } from 'node:child_process';

/**
 * The chaos network: one Linux network namespace per relay and one for everything else (the
 * driver, its clients, the edge Worker, Cassandra), all on one bridge in a namespace of their
 * own. Addresses are TEST-NET-1 (192.0.2.0/24) and exist only inside these namespaces; nothing
 * here touches the machine's own network. A partition is an nftables table inside each relay's
 * namespace that drops packets to and from the relays on the other side (clients keep reaching
 * every relay, as they would in a real split between data centres).
 */
export interface LabPlan {
  prefix: string;
  bridge: string;
  clients: string;
  clientAddress: string;
  relays: { ns: string; address: string }[];
}

const run = (args: string[], input?: string) =>
  execFileSync(args[0] ?? 'true', args.slice(1), {
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    input,
  });
const ip = (...args: string[]) => run(['ip', ...args]);

/** Why the lab cannot be built here, or undefined when it can. */
export function labUnavailable(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'the chaos run needs root on Linux';
  try {
    run(['nft', '--version']);
  } catch {
    return 'the chaos run needs nftables (apt-get install nftables)';
  }
  return undefined;
}

export function planLab(relays: number): LabPlan {
  const prefix = `ch${process.pid % 100000}`;
  return {
    prefix,
    bridge: `${prefix}-br`,
    clients: `${prefix}-cl`,
    clientAddress: '192.0.2.2',
    relays: Array.from({ length: relays }, (_, i) => ({ ns: `${prefix}-r${i}`, address: `192.0.2.${10 + i}` })),
  };
}

const namespaces = (plan: LabPlan) => [plan.bridge, plan.clients, ...plan.relays.map((r) => r.ns)];

export function buildLab(plan: LabPlan): void {
  destroyLab(plan);
  try {
    for (const ns of namespaces(plan)) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', plan.bridge, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', plan.bridge, 'link', 'set', 'br0', 'up');
    const attach = (ns: string, address: string, tag: string) => {
      const [inside, onBridge] = [`${plan.prefix}${tag}i`, `${plan.prefix}${tag}b`];
      ip('link', 'add', inside, 'type', 'veth', 'peer', 'name', onBridge);
      ip('link', 'set', inside, 'netns', ns);
      ip('link', 'set', onBridge, 'netns', plan.bridge);
      ip('-n', plan.bridge, 'link', 'set', onBridge, 'master', 'br0', 'up');
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', inside);
      ip('-n', ns, 'link', 'set', inside, 'up');
    };
    attach(plan.clients, plan.clientAddress, 'c');
    plan.relays.forEach((relay, i) => attach(relay.ns, relay.address, `r${i}`));
  } catch (error) {
    destroyLab(plan);
    throw error;
  }
}

/** Kill whatever still runs inside the lab (all of it started by this run), then delete it. */
export function destroyLab(plan: LabPlan): void {
  for (const ns of namespaces(plan)) {
    try {
      const pids = ip('netns', 'pids', ns).toString().split(/\s+/).filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      ip('netns', 'del', ns);
    } catch {
      // not there
    }
  }
}

const nft = (ns: string, script: string) => run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], script);
const TABLE = 'anode_chaos';

/** Split the relays into groups that cannot reach each other (each relay index in exactly one group). */
export function partition(plan: LabPlan, groups: number[][]): void {
  for (const group of groups) {
    const others = groups.filter((g) => g !== group).flat();
    const blocked = others.map((i) => plan.relays[i]?.address).join(', ');
    for (const i of group) {
      const ns = plan.relays[i]?.ns ?? '';
      heal1(ns);
      if (others.length === 0) continue;
      nft(
        ns,
        [
          `table inet ${TABLE} {`,
          ` chain input { type filter hook input priority filter; ip saddr { ${blocked} } drop; }`,
          ` chain output { type filter hook output priority filter; ip daddr { ${blocked} } drop; }`,
          '}',
          '',
        ].join('\n'),
      );
    }
  }
}

function heal1(ns: string): void {
  try {
    run(['ip', 'netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', TABLE]);
  } catch {
    // no partition there
  }
}

export function heal(plan: LabPlan): void {
  for (const relay of plan.relays) heal1(relay.ns);
}
