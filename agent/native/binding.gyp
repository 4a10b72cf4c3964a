{
  "targets": [
    {
      "target_name": "goroscope_bridge",
      "sources": ["bridge.c", "reader.c", "procmem.c", "tracefs.c", "exits.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wno-unused-parameter"],
      "libraries": ["-lbpf", "-lelf", "-lz", "-lpthread"]
    }
  ]
}
