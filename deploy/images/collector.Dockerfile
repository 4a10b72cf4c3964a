# syntax=docker/dockerfile:1
# The goroscope collector image. Build from the repository root:
#   docker build -f deploy/images/collector.Dockerfile -t goroscope/collector:0.1.0 .
#
# No BPF here: the collector is TypeScript over better-sqlite3 (built against this image's Node headers).
# It runs as the non-root user 10001 and keeps its database on the volume mounted at /var/lib/goroscope.
ARG NODE_IMAGE=node:20-bookworm
ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc g++ python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && node -e "new (require('better-sqlite3'))(':memory:').close()"

FROM ${NODE_RUNTIME_IMAGE}
RUN groupadd --system --gid 10001 goroscope \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/goroscope --shell /usr/sbin/nologin goroscope \
 && mkdir -p /var/lib/goroscope && chown 10001:10001 /var/lib/goroscope
WORKDIR /app
COPY --from=build /app/node_modules/ node_modules/
COPY package.json tsconfig.json ./
COPY bin/ bin/
# `goroscope collector` lives in the one CLI; the agent's sources come along (the BPF bridge is loaded only
# by `goroscope agent`, and is not in this image).
COPY agent/src/ agent/src/
COPY collector/src/ collector/src/
ENV NODE_ENV=production
USER 10001:10001
VOLUME ["/var/lib/goroscope"]
EXPOSE 7070
ENTRYPOINT ["node", "/app/bin/goroscope.js"]
CMD ["collector", "--listen", "0.0.0.0:7070", "--db", "/var/lib/goroscope/collector.db"]
