# syntax=docker/dockerfile:1
# The goroscope agent image. Build from the repository root:
#   docker build -f deploy/images/agent.Dockerfile -t goroscope/agent:0.1.0 .
#
# Stages: pingpong (the calibration Go program), build (BPF objects, the Node-API bridge, production
# node_modules, all against this image's own Node headers), then a slim runtime with only the shared
# libraries the bridge links (libbpf, libelf, zlib). Not built in this repository's CI (no container engine
# there); docs/deploy.md says how to check an image on a node.
ARG NODE_IMAGE=node:20-bookworm
ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim
ARG GO_IMAGE=golang:1.22-bookworm

# --- the calibration ping-pong (agent/calibrate/pingpong -> build/calibrate/pingpong) ---------------------
FROM ${GO_IMAGE} AS pingpong
WORKDIR /src
COPY agent/calibrate/pingpong/ ./
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o /out/pingpong .

# --- BPF objects, native bridge, node_modules --------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make gcc g++ pkg-config python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Native addons (better-sqlite3, ours) compile against the Node headers of this image, never a download.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# CO-RE objects: any BTF-derived vmlinux.h will do (libbpf relocates against the node's own BTF at load).
# Give one in the build context as bpf/.output/vmlinux.h, or the build host's /sys/kernel/btf/vmlinux is used.
COPY bpf/ bpf/
RUN mkdir -p bpf/.output \
 && if [ ! -s bpf/.output/vmlinux.h ]; then \
      test -r /sys/kernel/btf/vmlinux || { echo "no vmlinux.h: put one at bpf/.output/vmlinux.h (bpftool btf dump file /sys/kernel/btf/vmlinux format c)"; exit 1; }; \
      bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/.output/vmlinux.h; \
    fi \
 && make -C bpf BPFTOOL=bpftool

COPY agent/native/ agent/native/
RUN cd agent/native \
 && node /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js rebuild --nodedir=/usr/local \
 && test -f build/Release/goroscope_bridge.node

# The agent as ES modules bundled by esbuild (dist/goroscope.mjs and a chunk per command; packages stay in
# node_modules): plain node runs it, with no TypeScript loader in memory (about 35 MiB less idle RSS).
COPY tsconfig.json ./
COPY scripts/build-js.mjs scripts/build-js.mjs
COPY agent/src/ agent/src/
COPY collector/src/ collector/src/
RUN npm run build:js && test -f dist/goroscope.mjs

# --- runtime -------------------------------------------------------------------------------------------------
FROM ${NODE_RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/bpf/.output/*.bpf.o bpf/.output/
COPY --from=build /app/agent/native/build/Release/goroscope_bridge.node agent/native/build/Release/goroscope_bridge.node
COPY --from=pingpong /out/pingpong build/calibrate/pingpong
COPY package.json ./
COPY --from=build /app/dist/ dist/
COPY agent/src/gobinary/runtime-layouts.json agent/src/gobinary/runtime-layouts.json
# The agent runs as root with only CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_SYS_ADMIN (the DaemonSet's securityContext).
ENV NODE_ENV=production
# glibc gives each thread that allocates its own heap arena (up to 8 per core) and keeps what each freed: the
# reader threads, libuv's pool and V8's workers each held some. Two arenas keep the idle agent ~4.5 MiB smaller;
# these threads allocate too seldom to contend. The agent-memory bench runs the agent with this stage's ENV too.
ENV MALLOC_ARENA_MAX=2
# V8 grows its young generation to 32 MiB (two 16 MiB semi-spaces) after a burst of allocation, such as an
# attach, and an idle agent kept it: 2 MiB semi-spaces hold the idle agent's RSS near 100 MiB. --expose-gc lets
# the agent collect once after traced processes exit (agent/src/agent/processes.ts trimSoon). The agent-memory
# bench runs the agent with the node flags of this line.
ENTRYPOINT ["node", "--max-semi-space-size=2", "--expose-gc", "/app/dist/goroscope.mjs"]
CMD ["agent", "--help"]
