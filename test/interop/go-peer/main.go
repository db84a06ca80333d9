// go-peer: a go-libp2p peer that joins a private aNode relay mesh, written from docs/mesh.md
// ("Joining the mesh from another implementation"), as an interop check. run.sh starts two
// relays and runs it; see test/interop/README.md.
//
// Checks, in order (each prints OK or FAILED; the program exits 1 if any failed):
//
//	connect      TCP, private network (PSK v1), noise, yamux to relay A; identify lists the
//	             protocols docs/mesh.md says a relay speaks
//	receive      a message published over HTTP on relay B arrives by gossip (via A) as a
//	             strict-signed format-2 batch from B
//	publish      a batch this peer signs and publishes is stored by A and B
//	catch-up     /anode/catch-up/2.0.0 as a client: A's history has our envelope
//	serve        /anode/catch-up/2.0.0 as a server: A fetched an envelope we only kept locally
//	extra-fields fields beyond the six are dropped, the batch stored
//	too-large    an envelope with data above max_message_bytes (within the gossip limit) passes
//	             gossip validation but A does not store it
//	key types    secp256k1 and RSA peers publish batches that A stores
//	rejections   forged and malformed batches, each from a fresh peer: A rejects them (its
//	             rejected_messages counter rises) and does not store them
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

var (
	keyFile   = flag.String("key", "", "swarm.key file (PSK v1); empty: no private network")
	dialHTTP  = flag.String("dial-http", "", "HTTP base URL of relay A, the relay this peer dials (its multiaddr is read from /v1/status)")
	pubHTTP   = flag.String("pub-http", "", "HTTP base URL of relay B, where the receive check publishes over HTTP; default: dial-http")
	checkHTTP = flag.String("check-http", "", "HTTP base URL(s), comma-separated, whose history must show our own envelope; default: dial-http")
	topicName = flag.String("topic", "prices.btc-usd", "aNode topic")
	shards    = flag.Uint("shards", 32, "mesh_shards of the relays")
	nodeID    = flag.String("node", "", "our node id (1-32 of [a-z0-9]); default: random")
	maxRPC    = flag.Int("max-rpc", 4<<20, "largest gossipsub RPC accepted (the relays send up to max(4 MiB, 2 × mesh_max_message_bytes + 64 KiB))")
	maxMsg    = flag.Int("max-message-bytes", 1<<20, "the relays' max_message_bytes (for the too-large check)")
	timeout   = flag.Duration("timeout", 15*time.Second, "time limit of each check")
)

var (
	psk      pnet.PSK
	lastDial time.Time
)

func logf(format string, a ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}

func fatalf(format string, a ...any) {
	logf("FATAL "+format, a...)
	os.Exit(1)
}

// --- results ---

var results []struct {
	name string
	ok   bool
}

func result(name string, ok bool, format string, a ...any) bool {
	results = append(results, struct {
		name string
		ok   bool
	}{name, ok})
	word := "OK"
	if !ok {
		word = "FAILED"
	}
	logf("CHECK %s %s: "+format, append([]any{name, word}, a...)...)
	return ok
}

// --- the wire formats (docs/mesh.md) ---

// shardTopic: "Topic names".
func shardTopic(topic string, n uint32) string {
	first := topic
	if i := strings.IndexByte(topic, '.'); i >= 0 {
		first = topic[:i]
	}
	h := fnv.New32a()
	h.Write([]byte(first))
	return fmt.Sprintf("/anode/2/shard/%d/%d", n, h.Sum32()%n)
}

func shardOf(topic string) uint32 {
	st := shardTopic(topic, uint32(*shards))
	n, _ := strconv.Atoi(st[strings.LastIndexByte(st, '/')+1:])
	return uint32(n)
}

// msgID: "Message id".
func msgID(m *pb.Message) string {
	from, err := peer.IDFromBytes(m.GetFrom())
	fromStr := ""
	if err == nil {
		fromStr = from.String()
	}
	var n uint64
	for _, b := range m.GetSeqno() {
		n = n<<8 | uint64(b)
	}
	if strings.HasPrefix(m.GetTopic(), "/anode/2/shard/") {
		return fromStr + "/" + fmt.Sprintf("%016x", n)
	}
	return fromStr + "/" + strconv.FormatUint(n, 10)
}

type Envelope struct {
	ID     string          `json:"id"`
	Topic  string          `json:"topic"`
	Cursor string          `json:"cursor"`
	Source string          `json:"source"`
	TS     int64           `json:"ts"`
	Data   json.RawMessage `json:"data"`
}

type Batch struct {
	V         int        `json:"v"`
	Node      string     `json:"node"`
	Envelopes []Envelope `json:"envelopes"`
}

var counter struct {
	sync.Mutex
	ms, n int64
}

// cursorFor: "Node ids and cursors": <12 hex ms><4 hex counter>-<node id>, strictly increasing.
func cursorFor(node string) (string, int64) {
	counter.Lock()
	defer counter.Unlock()
	ms := time.Now().UnixMilli()
	if ms <= counter.ms {
		counter.n++
		ms = counter.ms
	} else {
		counter.ms, counter.n = ms, 0
	}
	return fmt.Sprintf("%012x%04x-%s", ms, counter.n, node), ms
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "g" + base64.RawURLEncoding.EncodeToString(b)
}

func randomNode() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("gp%x", b)
}

func cursorNode(cursor string) string { return cursor[strings.IndexByte(cursor, '-')+1:] }

// --- the relays' HTTP API ---

func getJSON(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

func relayAddr(base string) (*peer.AddrInfo, error) {
	var st struct {
		Node struct {
			Multiaddrs []string `json:"multiaddrs"`
		} `json:"node"`
	}
	if err := getJSON(base+"/v1/status", &st); err != nil {
		return nil, err
	}
	for _, s := range st.Node.Multiaddrs {
		if !strings.Contains(s, "/tcp/") || strings.Contains(s, "/ws") || strings.Contains(s, "p2p-circuit") {
			continue
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		return peer.AddrInfoFromP2pAddr(a)
	}
	return nil, fmt.Errorf("no TCP multiaddr in %v", st.Node.Multiaddrs)
}

// history returns the envelopes of the topic a relay stores, by id, as the relay sent them
// (enough pages for a short run).
func history(base string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	after := "0"
	for page := 0; page < 20; page++ {
		var h struct {
			Messages []json.RawMessage `json:"messages"`
			Next     *string           `json:"next"`
		}
		if err := getJSON(base+"/v1/topics/"+*topicName+"/messages?limit=1000&after="+after, &h); err != nil {
			return nil, err
		}
		for _, raw := range h.Messages {
			var e struct {
				ID string `json:"id"`
			}
			json.Unmarshal(raw, &e)
			out[e.ID] = raw
		}
		if h.Next == nil {
			break
		}
		after = *h.Next
	}
	return out, nil
}

// waitStored polls a relay's history until it has envelope id, for at most -timeout.
func waitStored(base, id string) (json.RawMessage, bool) {
	deadline := time.Now().Add(*timeout)
	for {
		h, err := history(base)
		if err != nil {
			logf("history of %s: %v", base, err)
		}
		if e, ok := h[id]; ok {
			return e, true
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func stored(base, id string) bool {
	h, err := history(base)
	if err != nil {
		logf("history of %s: %v", base, err)
	}
	_, ok := h[id]
	return ok
}

// rejected: relay A's count of gossip batches it rejected (/v1/status mesh.rejected_messages).
func rejected() float64 {
	var status struct {
		Mesh struct {
			Rejected float64 `json:"rejected_messages"`
		} `json:"mesh"`
	}
	if err := getJSON(*dialHTTP+"/v1/status", &status); err != nil {
		logf("status: %v", err)
	}
	return status.Mesh.Rejected
}

// --- a libp2p peer as docs/mesh.md describes it ---

type meshPeer struct {
	h     host.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	node  string
}

func keyPair(kind string) (crypto.PrivKey, error) {
	kt := map[string]int{"ed25519": crypto.Ed25519, "secp256k1": crypto.Secp256k1, "rsa": crypto.RSA, "ecdsa": crypto.ECDSA}
	t, ok := kt[kind]
	if !ok {
		return nil, fmt.Errorf("unknown key type %q", kind)
	}
	priv, _, err := crypto.GenerateKeyPairWithReader(t, 2048, rand.Reader)
	return priv, err
}

// newPeer makes a host with a fresh key of `kind`, joins the shard topic of -topic, dials the
// relay and waits until the relay's subscription to that topic reached it. `before` runs on the
// host before it dials (to register protocol handlers identify should announce).
func newPeer(ctx context.Context, kind, node string, relay peer.AddrInfo, before func(host.Host)) (*meshPeer, error) {
	// A relay (js-libp2p's connection manager, inboundConnectionThreshold) refuses more than 5
	// inbound connections a second from one IP address: dial at most 4 a second.
	if wait := time.Until(lastDial.Add(250 * time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	lastDial = time.Now()
	priv, err := keyPair(kind)
	if err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.Ping(true),
	}
	if psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(psk))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("libp2p.New: %w", err)
	}
	p := &meshPeer{h: h, node: node}
	fail := func(err error) (*meshPeer, error) { h.Close(); return nil, err }
	if before != nil {
		before(h)
	}
	p.ps, err = pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMessageIdFn(msgID),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(false),
		pubsub.WithMaxMessageSize(*maxRPC),
	)
	if err != nil {
		return fail(fmt.Errorf("gossipsub: %w", err))
	}
	st := shardTopic(*topicName, uint32(*shards))
	if p.topic, err = p.ps.Join(st); err != nil {
		return fail(fmt.Errorf("join %s: %w", st, err))
	}
	if p.sub, err = p.topic.Subscribe(); err != nil {
		return fail(fmt.Errorf("subscribe %s: %w", st, err))
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	err = h.Connect(cctx, relay)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("connect to %s: %w", relay.ID, err))
	}
	deadline := time.Now().Add(*timeout)
	for len(p.topic.ListPeers()) == 0 {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("relay's subscription to %s not seen within %v", st, *timeout))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, nil
}

// publish signs and publishes one batch (any JSON value: the rejection checks send broken ones).
func (p *meshPeer) publish(ctx context.Context, batch any) error {
	data, err := json.Marshal(batch)
	if err != nil {
		return err
	}
	return p.topic.Publish(ctx, data)
}

// envelope: a valid envelope under this peer's node id.
func (p *meshPeer) envelope(data string) Envelope {
	cur, ms := cursorFor(p.node)
	return Envelope{ID: randomID(), Topic: *topicName, Cursor: cur, Source: "go-peer", TS: ms, Data: json.RawMessage(data)}
}

// The protocols docs/mesh.md lists for a full relay that every relay announces (hop needs
// mesh_public; the relays here are not public).
var wantProtocols = []protocol.ID{
	"/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0",
	"/anode/catch-up/2.0.0", "/anode/resync/1.0.0", "/anode/state/1.0.0", "/anode/status/1.0.0",
	"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/libp2p/dcutr", "/libp2p/circuit/relay/0.2.0/stop",
	"/webrtc-signaling/0.0.1",
}

func main() {
	flag.Parse()
	if *dialHTTP == "" {
		fatalf("-dial-http is required")
	}
	if *pubHTTP == "" {
		*pubHTTP = *dialHTTP
	}
	if *checkHTTP == "" {
		*checkHTTP = *dialHTTP
	}
	if *nodeID == "" {
		*nodeID = randomNode()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *keyFile != "" {
		f, err := os.Open(*keyFile)
		if err != nil {
			fatalf("%v", err)
		}
		psk, err = pnet.DecodeV1PSK(f)
		f.Close()
		if err != nil {
			fatalf("swarm.key: %v", err)
		}
		logf("private network: PSK v1 from %s", *keyFile)
	}
	relay, err := relayAddr(*dialHTTP)
	if err != nil {
		fatalf("relay A's address: %v", err)
	}

	// One envelope kept only here, from before we connect: relay A can get it only by catching
	// up from us (the serve check).
	offline := Envelope{}
	me, err := newPeer(ctx, "ed25519", *nodeID, *relay, func(h host.Host) {
		cur, ms := cursorFor(*nodeID)
		offline = Envelope{ID: randomID(), Topic: *topicName, Cursor: cur, Source: "go-peer", TS: ms, Data: json.RawMessage(`{"offline":true}`)}
		keepLocal(offline)
		serveCatchUp(h)
	})
	if err != nil {
		result("connect", false, "%v", err)
		finish()
	}
	defer me.h.Close()
	conns := me.h.Network().ConnsToPeer(relay.ID)
	secure := len(conns) > 0 && conns[0].ConnState().Security == noise.ID && conns[0].ConnState().StreamMultiplexer == yamux.ID
	time.Sleep(200 * time.Millisecond) // identify
	protos, _ := me.h.Peerstore().GetProtocols(relay.ID)
	var missing []protocol.ID
	for _, p := range wantProtocols {
		if !slices.Contains(protos, p) {
			missing = append(missing, p)
		}
	}
	logf("peer %s (node id %s) connected to relay A %s; A's protocols (identify): %v", me.h.ID(), *nodeID, relay.ID, protos)
	result("connect", secure && len(missing) == 0, "private network %v, noise+yamux %v, documented protocols missing: %v", psk != nil, secure, missing)

	received = make(chan Batch, 64)
	go func() {
		for {
			m, err := me.sub.Next(ctx)
			if err != nil {
				return
			}
			var b Batch
			if err := json.Unmarshal(m.Data, &b); err != nil || len(m.GetFrom()) == 0 || len(m.Signature) == 0 {
				logf("gossip message from %s: not a signed batch (%v)", m.ReceivedFrom, err)
				continue
			}
			received <- b
		}
	}()

	checkReceive(ctx)
	own := checkPublish(ctx, me)
	checkCatchUp(ctx, me.h, relay.ID, own)
	checkServe(offline)
	checkExtraFields(ctx, me)
	checkTooLarge(ctx, me)
	checkKeyTypes(ctx, *relay)
	checkRejections(ctx, *relay)
	finish()
}

var received chan Batch

func finish() {
	failed := []string{}
	for _, r := range results {
		if !r.ok {
			failed = append(failed, r.name)
		}
	}
	logf("RESULT %d checks, %d failed %v", len(results), len(failed), failed)
	if len(failed) > 0 || len(results) == 0 {
		os.Exit(1)
	}
	os.Exit(0)
}
