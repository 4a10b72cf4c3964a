// pingpong: two goroutines hand a value back and forth over unbuffered channels. With GOMAXPROCS=1 each
// round trip is exactly 2 gopark and 2 ready calls, so the time per round trip with and without probes
// gives the cost of a probe hit. The agent calibrates with it; the benchmarks measure with it.
//
// It prints "READY" and waits for a line on stdin before each run (so probes can be attached first), then
// prints "ns_per_round_trip=<n>".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	n := flag.Int("n", 200000, "round trips per run")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "quit" {
			return
		}
		start := time.Now()
		for i := 0; i < *n; i++ {
			ping <- i
			<-pong
		}
		fmt.Printf("ns_per_round_trip=%d\n", time.Since(start).Nanoseconds()/int64(*n))
	}
}
