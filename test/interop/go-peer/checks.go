package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// bNode: relay B's node id, from the cursor it minted for the receive check.
var bNode string

// checkReceive: publish over HTTP on relay B; the envelope arrives here by gossip (we are
// connected to A only) in a signed format-2 batch whose node is B's.
func checkReceive(ctx context.Context) {
	body := fmt.Sprintf(`{"data":{"check":"receive","sent":%d}}`, time.Now().UnixMilli())
	resp, err := http.Post(*pubHTTP+"/v1/topics/"+*topicName+"/messages", "application/json", strings.NewReader(body))
	if err != nil {
		result("receive", false, "HTTP publish on %s: %v", *pubHTTP, err)
		return
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pr struct {
		Messages []struct{ ID, Cursor string } `json:"messages"`
	}
	if err := json.Unmarshal(rb, &pr); err != nil || len(pr.Messages) != 1 {
		result("receive", false, "HTTP publish on %s: %d %s", *pubHTTP, resp.StatusCode, rb)
		return
	}
	want := pr.Messages[0]
	bNode = cursorNode(want.Cursor)
	t := time.After(*timeout)
	for {
		select {
		case b := <-received:
			for _, e := range b.Envelopes {
				if e.ID == want.ID {
					j, _ := json.Marshal(e)
					result("receive", b.V == 2 && b.Node == bNode && e.Cursor == want.Cursor,
						"batch v=%d node=%s (relay B's node id %s): %s", b.V, b.Node, bNode, j)
					return
				}
			}
		case <-t:
			result("receive", false, "envelope %s published on %s not received by gossip within %v", want.ID, *pubHTTP, *timeout)
			return
		}
	}
}

// checkPublish: our own signed batch is stored by every relay in -check-http.
func checkPublish(ctx context.Context, me *meshPeer) string {
	e := me.envelope(`{"from":"go-libp2p","check":"publish"}`)
	keepLocal(e)
	if err := me.publish(ctx, Batch{V: 2, Node: me.node, Envelopes: []Envelope{e}}); err != nil {
		result("publish", false, "publish: %v", err)
		return e.ID
	}
	for _, base := range strings.Split(*checkHTTP, ",") {
		raw, ok := waitStored(base, e.ID)
		if !result("publish", ok, "our envelope %s in the history of %s: %s", e.ID, base, raw) {
			break
		}
	}
	return e.ID
}

// checkCatchUp: relay A's history, fetched over the catch-up protocol, has our envelope.
func checkCatchUp(ctx context.Context, h host.Host, relay peer.ID, own string) {
	envs, err := catchUp(ctx, h, relay, *topicName)
	if err != nil {
		result("catch-up", false, "%v", err)
		return
	}
	has := false
	for _, e := range envs {
		has = has || e.ID == own
	}
	result("catch-up", has, "%d envelopes from relay A, ours (%s) among them: %v", len(envs), own, has)
}

// checkServe: relay A caught up from us when we connected, and so stored the envelope we never
// published by gossip.
func checkServe(offline Envelope) {
	raw, ok := waitStored(*dialHTTP, offline.ID)
	result("serve", ok, "relay A fetched our unpublished envelope %s by catch-up: %s", offline.ID, raw)
}

// checkExtraFields: fields beyond the six (and beyond v, node, envelopes) are dropped, the batch
// accepted.
func checkExtraFields(ctx context.Context, me *meshPeer) {
	e := me.envelope(`{"check":"extra-fields"}`)
	env := map[string]any{"id": e.ID, "topic": e.Topic, "cursor": e.Cursor, "source": e.Source, "ts": e.TS, "data": e.Data, "extra": 1}
	if err := me.publish(ctx, map[string]any{"v": 2, "node": me.node, "envelopes": []any{env}, "extra": 1}); err != nil {
		result("extra-fields", false, "publish: %v", err)
		return
	}
	raw, ok := waitStored(*dialHTTP, e.ID)
	var got map[string]any
	json.Unmarshal(raw, &got)
	_, extra := got["extra"]
	result("extra-fields", ok && !extra, "stored by relay A without the extra field: %s", raw)
}

// checkTooLarge: an envelope whose data is above max_message_bytes but whose batch is within the
// gossip limit passes gossip validation (A's rejected counter does not move) and is not stored
// (A logs "envelope from elsewhere refused"; run.sh checks that).
func checkTooLarge(ctx context.Context, me *meshPeer) {
	before := rejected()
	big := me.envelope(`"` + strings.Repeat("z", *maxMsg+1000) + `"`)
	marker := me.envelope(`{"check":"too-large marker"}`)
	if err := me.publish(ctx, Batch{V: 2, Node: me.node, Envelopes: []Envelope{big}}); err != nil {
		result("too-large", false, "publish: %v", err)
		return
	}
	// A handles one peer's messages in order: once the next batch is stored, the large one was handled.
	if err := me.publish(ctx, Batch{V: 2, Node: me.node, Envelopes: []Envelope{marker}}); err != nil {
		result("too-large", false, "publish: %v", err)
		return
	}
	_, markerOK := waitStored(*dialHTTP, marker.ID)
	after := rejected()
	isStored := stored(*dialHTTP, big.ID)
	result("too-large", markerOK && !isStored && after == before,
		"data of %d bytes: stored by relay A %v, A's rejected_messages %v -> %v (the next batch stored: %v)",
		*maxMsg+1002, isStored, before, after, markerOK)
}

// checkKeyTypes: peers with secp256k1 and RSA keys (relays use Ed25519) join and publish.
func checkKeyTypes(ctx context.Context, relay peer.AddrInfo) {
	for _, kind := range []string{"secp256k1", "rsa"} {
		p, err := newPeer(ctx, kind, randomNode(), relay, nil)
		if err != nil {
			result("key-"+kind, false, "%v", err)
			continue
		}
		e := p.envelope(`{"check":"key ` + kind + `"}`)
		if err := p.publish(ctx, Batch{V: 2, Node: p.node, Envelopes: []Envelope{e}}); err != nil {
			result("key-"+kind, false, "publish: %v", err)
		} else {
			_, ok := waitStored(*dialHTTP, e.ID)
			result("key-"+kind, ok, "peer %s stored its envelope on relay A: %v", p.h.ID(), ok)
		}
		p.h.Close()
	}
}

// checkRejections: each bad batch comes from a fresh peer (a rejected batch scores its sender
// down; two put it on the graylist, where its messages are ignored, not rejected). Relay A must
// reject it (rejected_messages rises) and must not store its envelope.
func checkRejections(ctx context.Context, relay peer.AddrInfo) {
	type batch = map[string]any
	cases := []struct {
		name  string
		node  string // the fresh peer's node id; empty: random
		build func(env batch, b batch, ms int64) any
	}{
		{"v1", "", func(env, b batch, ms int64) any { b["v"] = 1; return b }},
		{"not-object", "", func(env, b batch, ms int64) any { return json.RawMessage(`"not a batch"`) }},
		{"node-id", "", func(env, b batch, ms int64) any { b["node"] = "Not_A_Node"; return b }},
		{"no-envelopes", "", func(env, b batch, ms int64) any { b["envelopes"] = []any{}; return b }},
		{"bad-id", "", func(env, b batch, ms int64) any { env["id"] = "bad id!"; return b }},
		{"wrong-shard", "", func(env, b batch, ms int64) any { env["topic"] = "orders.eu"; return b }},
		{"future-cursor", "", func(env, b batch, ms int64) any {
			env["cursor"] = fmt.Sprintf("%012x%04x-%s", ms+120_000, 0, b["node"])
			return b
		}},
		{"future-ts", "", func(env, b batch, ms int64) any { env["ts"] = ms + 180_000; return b }},
		{"no-data", "", func(env, b batch, ms int64) any { delete(env, "data"); return b }},
		// Another relay's node id, as the batch's node and in the cursor.
		{"forged-node", "B", func(env, b batch, ms int64) any { return b }},
		// Our own node id, but an envelope minted under another relay's.
		{"forged-cursor", "", func(env, b batch, ms int64) any {
			env["cursor"] = fmt.Sprintf("%012x%04x-%s", ms, 1, bNode)
			return b
		}},
		// The main peer's node id from a new key: the node id is bound to the first key.
		{"new-key-same-node", "main", func(env, b batch, ms int64) any { return b }},
	}
	for _, c := range cases {
		node := randomNode()
		switch c.node {
		case "B":
			node = bNode
		case "main":
			node = *nodeID
		}
		if node == "" {
			result("reject-"+c.name, false, "relay B's node id unknown (the receive check failed)")
			continue
		}
		p, err := newPeer(ctx, "ed25519", node, relay, nil)
		if err != nil {
			result("reject-"+c.name, false, "%v", err)
			continue
		}
		e := p.envelope(`{"check":"reject ` + c.name + `"}`)
		env := batch{"id": e.ID, "topic": e.Topic, "cursor": e.Cursor, "source": e.Source, "ts": e.TS, "data": e.Data}
		msg := c.build(env, batch{"v": 2, "node": node, "envelopes": []any{env}}, e.TS)
		before := rejected()
		if err := p.publish(ctx, msg); err != nil {
			result("reject-"+c.name, false, "publish: %v", err)
			p.h.Close()
			continue
		}
		after := before
		for deadline := time.Now().Add(*timeout); after == before && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			after = rejected()
		}
		isStored := stored(*dialHTTP, e.ID)
		result("reject-"+c.name, after > before && !isStored, "relay A's rejected_messages %v -> %v, stored %v", before, after, isStored)
		p.h.Close()
	}
}
