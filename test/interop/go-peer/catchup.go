package main

// The catch-up protocol (docs/mesh.md "Catch-up protocol"), client and server.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const catchUpProto = "/anode/catch-up/2.0.0"

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.AppendUvarint(nil, uint64(len(body))), body...))
	return err
}

func readFrame(r *bufio.Reader, max uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("frame of %d bytes > %d", n, max)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// catchUp asks a relay for the topics of -topic's shard, then for the topic's whole history.
func catchUp(ctx context.Context, h host.Host, p peer.ID, topic string) ([]Envelope, error) {
	s, err := h.NewStream(ctx, p, catchUpProto)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(*timeout))
	r := bufio.NewReader(s)
	// 512 KiB + mesh_max_message_bytes (default max_message_bytes + 64 KiB) + 64 KiB.
	maxFrame := uint64(512<<10 + *maxMsg + 64<<10 + 64<<10)

	if err := writeFrame(s, map[string]any{"op": "topics", "shards": []uint32{shardOf(topic)}, "shard_count": *shards}); err != nil {
		return nil, err
	}
	b, err := readFrame(r, maxFrame)
	if err != nil {
		return nil, err
	}
	var topics struct {
		Topics []string `json:"topics"`
		Error  any      `json:"error"`
	}
	if err := json.Unmarshal(b, &topics); err != nil || topics.Error != nil {
		return nil, fmt.Errorf("topics answer %s (%v)", b, err)
	}
	logf("catch-up: topics in shard %d: %v", shardOf(topic), topics.Topics)

	var all []Envelope
	after := "0"
	for page := 0; page < 100; page++ {
		if err := writeFrame(s, map[string]any{"op": "history", "topic": topic, "after": after, "limit": 500}); err != nil {
			return nil, err
		}
		b, err := readFrame(r, maxFrame)
		if err != nil {
			return nil, err
		}
		var resp struct {
			Messages []Envelope `json:"messages"`
			Next     *string    `json:"next"`
			Error    any        `json:"error"`
		}
		if err := json.Unmarshal(b, &resp); err != nil {
			return nil, fmt.Errorf("bad frame %q: %v", b, err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("server error: %s", b)
		}
		all = append(all, resp.Messages...)
		if resp.Next == nil || *resp.Next <= after {
			break
		}
		after = *resp.Next
	}
	return all, nil
}

// What this peer serves: the envelopes it published (ascending cursor).
var local struct {
	sync.Mutex
	envs []Envelope
}

func keepLocal(e Envelope) {
	local.Lock()
	local.envs = append(local.envs, e)
	local.Unlock()
}

// serveCatchUp answers /anode/catch-up/2.0.0 from the envelopes kept by keepLocal. A relay
// treats a peer that speaks it as a mesh peer and catches up from it when it connects.
func serveCatchUp(h host.Host) {
	h.SetStreamHandler(catchUpProto, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		from := s.Conn().RemotePeer()
		for {
			s.SetDeadline(time.Now().Add(30 * time.Second))
			b, err := readFrame(r, 1<<20)
			if err != nil {
				return
			}
			logf("catch-up server: request from %s: %s", from, b)
			var req struct {
				Op         string   `json:"op"`
				Shards     []uint32 `json:"shards"`
				ShardCount uint     `json:"shard_count"`
				After      string   `json:"after"`
				Topic      string   `json:"topic"`
				Limit      int      `json:"limit"`
			}
			if err := json.Unmarshal(b, &req); err != nil {
				writeFrame(s, map[string]any{"error": "bad request"})
				return
			}
			local.Lock()
			envs := append([]Envelope(nil), local.envs...)
			local.Unlock()
			var resp any
			switch {
			case req.Op == "topics" && req.ShardCount == *shards:
				want := map[uint32]bool{}
				for _, sh := range req.Shards {
					want[sh] = true
				}
				set := map[string]bool{}
				for _, e := range envs {
					if want[shardOf(e.Topic)] && e.Topic > req.After {
						set[e.Topic] = true
					}
				}
				topics := []string{}
				for t := range set {
					topics = append(topics, t)
				}
				sort.Strings(topics)
				resp = map[string]any{"topics": topics, "next": nil}
			case req.Op == "history":
				msgs := []Envelope{}
				for _, e := range envs {
					if e.Topic == req.Topic && e.Cursor > req.After && (req.Limit <= 0 || len(msgs) < req.Limit) {
						msgs = append(msgs, e)
					}
				}
				resp = map[string]any{"messages": msgs, "next": nil}
			default:
				writeFrame(s, map[string]any{"error": "unsupported"})
				return
			}
			if err := writeFrame(s, resp); err != nil {
				return
			}
		}
	})
}
