# Stand-in for the registry's node:24-bookworm-slim (Docker Hub is not reachable from CI): the
# local Debian bookworm root file system plus the Node 24 binary from the npm `node` package the
# project's lockfile pins, and npm from the npm registry. Built by test/docker/base-images.ts.
ARG DEBIAN_IMAGE=anode/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG NODE_VERSION
LABEL org.opencontainers.image.title="anode/base-node" anode.node-version="${NODE_VERSION}"
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
# The CAs the building machine added to its trust store (CI's egress proxy intercepts TLS).
COPY ca/ /usr/local/share/ca-certificates/
# ca-certificates: npm talks to its registry over TLS. The `node` user (uid 1000) is the one the
# official image has, so the relay Dockerfile works on either.
RUN apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
  && update-ca-certificates >/dev/null \
  && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
  && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
  && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
  && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
  && node --version && npm --version
ENV NODE_VERSION=${NODE_VERSION} NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
