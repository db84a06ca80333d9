# aNode relay node. Build: docker build -t anode-relay .   Run: docker run -p 8080:8080 anode-relay
FROM node:24-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY relay-node/package.json relay-node/
COPY worker/package.json worker/
COPY test/package.json test/
RUN npm ci --omit=dev --no-audit --no-fund --workspace @anode/relay-node --include-workspace-root=false
COPY shared shared
COPY relay-node relay-node
ENV ANODE_HOST=0.0.0.0 ANODE_PORT=8080 ANODE_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER node
CMD ["node", "relay-node/bin/anode.ts", "relay"]
