# aNode relay image. Build: docker build -t anode/relay .
# Run:   docker run -p 127.0.0.1:8080:8080 -v anode-data:/data anode/relay
# Every relay setting is an ANODE_* variable (`docker run --rm anode/relay --help` lists them).
#
# BASE_IMAGE is any Debian-based Node 24 image with npm and a `node` user (uid 1000): the
# registry's node:24-bookworm-slim by default; CI, which cannot reach Docker Hub, passes the
# stand-in it builds locally (test/docker/base-images.ts: --build-arg BASE_IMAGE=anode/base-node:24).
ARG BASE_IMAGE=node:24-bookworm-slim

# Build stage: every dependency (Vite builds the dashboard), then the production dependencies
# alone, installed again from the npm cache the first install filled. .npmrc keeps npm from
# installing peers for their dependents (react-native, a peer of the react-native-webrtc that
# @libp2p/webrtc never loads on Node); --omit=peer stays as a second guard.
FROM ${BASE_IMAGE} AS build
# Marks the build stage's leftover images, so they can be pruned (the test does).
LABEL anode.stage=build
WORKDIR /src
COPY package.json package-lock.json .npmrc tsconfig.base.json ./
COPY shared/package.json shared/
COPY client/package.json client/
COPY relay-node/package.json relay-node/
COPY worker/package.json worker/
COPY test/package.json test/
RUN npm ci --workspace @anode/relay-node --include-workspace-root=false --no-audit --no-fund
COPY shared/ shared/
COPY relay-node/ relay-node/
RUN npm run build --workspace @anode/relay-node \
  && test -f relay-node/dashboard/dist/index.html \
  && rm -rf node_modules relay-node/node_modules shared/node_modules \
  && npm ci --workspace @anode/relay-node --include-workspace-root=false --omit=dev --omit=peer --prefer-offline --no-audit --no-fund \
  && rm -rf relay-node/dashboard/src relay-node/dashboard/*.ts relay-node/dashboard/*.json relay-node/dashboard/screenshot.png

# Runtime stage: Node, the relay's sources (Node runs TypeScript as is), production
# dependencies and the built dashboard; no npm cache, no dev dependencies.
FROM ${BASE_IMAGE} AS runtime
# Its own labels: the base image's (a title of node or anode/base-node) would otherwise show.
LABEL org.opencontainers.image.title="anode/relay" \
  org.opencontainers.image.description="aNode relay: a self-hosted real-time hub (WebSocket pub/sub, private libp2p mesh)" \
  org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/shared/ shared/
COPY --from=build /src/relay-node/ relay-node/
COPY docker/mesh-key.ts docker/
# /data (node id, peer key, embedded store) and /keys (a generated mesh key) belong to the
# runtime user; a named volume mounted there starts as a copy of them, owner included.
RUN chmod +x relay-node/bin/anode.ts && ln -s /app/relay-node/bin/anode.ts /usr/local/bin/anode \
  && mkdir -p /data /keys && chown node:node /data /keys && chmod 0700 /data /keys
ENV NODE_ENV=production ANODE_HOST=0.0.0.0 ANODE_PORT=8080 ANODE_DATA_DIR=/data
USER node
VOLUME /data
# HTTP/WebSocket and dashboard; 4001 is the mesh port the compose files use (ANODE_LISTEN).
EXPOSE 8080 4001
# Each check starts a Node process, so not too often. It asks ANODE_PORT: a port set another way
# (--port, a config file) needs a HEALTHCHECK (or compose healthcheck test) of its own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["node", "-e", \
  "fetch('http://127.0.0.1:'+(process.env.ANODE_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["anode"]
CMD ["relay"]
