// pingpong: what one park/ready probe hit costs. Two goroutines bounce a value over unbuffered channels: with
// GOMAXPROCS=1 each round trip is exactly 2 runtime.gopark and 2 runtime.ready calls, so the time per round trip
// with and without probes gives the cost of a hit. The agent calibrates with it (agent/src/overhead/calibrate.ts)
// and the benchmark measures with it (scripts/bench/hit-cost.ts): one program, one way of measuring.
//
// A real process does work between its parks and readies, which takes the probes' code and data out of the CPU's
// caches: each hit then pays for bringing them back, and evicts some of the process's own, which it pays for after.
// -touch writes that much memory between round trips (with and without probes alike), so the difference measures
// a hit as a busy process pays for it; without it, as a tight loop with everything cached does.
//
// It stays up and runs a measurement per command, so probes can be attached and detached between runs:
//
//	stdout "READY"  -> warmed up, waiting for commands
//	stdin "run N"   -> N round trips, then "RESULT n=N ns=<wall total> cpu_ns=<CPU total> per_rt=<wall ns per round trip>"
//	stdin "quit"    -> exit
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuNs is the CPU time (user + system, every thread) the process has used: on a shared machine it counts
// what the probes cost even while the process waits for a CPU.
func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	procs := flag.Int("procs", 1, "GOMAXPROCS (1: the round trip is sequential and the per-hit cost exact)")
	touchKiB := flag.Int("touch", 0, "KiB of memory written between round trips: a busy process's caches")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)

	ping := make(chan int)
	pong := make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()

	work := make([]byte, *touchKiB<<10)
	roundTrips := func(n int) time.Duration {
		start := time.Now()
		v := 0
		for i := 0; i < n; i++ {
			ping <- v
			v = <-pong
			for j := 0; j < len(work); j += 64 { // a byte of every cache line
				work[j]++
			}
		}
		return time.Since(start)
	}
	roundTrips(1000) // warm up: the pong goroutine is parked on its channel from here on

	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "run":
			n := 0
			if len(f) > 1 {
				n, _ = strconv.Atoi(f[1])
			}
			if n <= 0 {
				fmt.Println("ERROR bad count")
				continue
			}
			c0 := cpuNs()
			d := roundTrips(n)
			c := cpuNs() - c0
			fmt.Printf("RESULT n=%d ns=%d cpu_ns=%d per_rt=%.1f\n", n, d.Nanoseconds(), c, float64(d.Nanoseconds())/float64(n))
		case "quit":
			fmt.Println("BYE")
			return
		}
	}
}
