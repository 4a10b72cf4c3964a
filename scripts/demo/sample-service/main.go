// A small Go service for goroscope's demo: an HTTP API with a worker pool behind it, a cache refresher, a
// leak (a poller per request that nobody stops), and its own load generator on loopback.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

type job struct {
	n     int
	reply chan int
}

var (
	jobs    = make(chan job)
	cacheMu sync.RWMutex
	cache   = map[int]int{}
)

// worker computes jobs from the pool's queue.
func worker() {
	for j := range jobs {
		s := 0
		for i := 0; i < j.n*1000; i++ {
			s += i % 7
		}
		j.reply <- s
	}
}

// refresher rebuilds the cache every second.
func refresher() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range t.C {
		cacheMu.Lock()
		for k := range cache {
			cache[k]++
		}
		cacheMu.Unlock()
	}
}

// watch polls forever: a ticker nobody stops, one per /watch request. This is the leak.
func watch(id int) {
	t := time.NewTicker(500 * time.Millisecond)
	for range t.C {
		cacheMu.RLock()
		_ = cache[id]
		cacheMu.RUnlock()
	}
}

func handleCompute(w http.ResponseWriter, r *http.Request) {
	reply := make(chan int, 1)
	jobs <- job{n: 10, reply: reply}
	fmt.Fprintf(w, "%d\n", <-reply)
}

var watchID int
var watchMu sync.Mutex

func handleWatch(w http.ResponseWriter, r *http.Request) {
	watchMu.Lock()
	watchID++
	id := watchID
	watchMu.Unlock()
	go watch(id)
	fmt.Fprintf(w, "watching %d\n", id)
}

// load calls the service on loopback, forever: rps requests a second, one in twenty a /watch on a new connection.
func load(addr string, rps int) {
	client := &http.Client{Timeout: 5 * time.Second}
	// /watch calls open a connection each (no keep-alive), so connects and closes show up too.
	once := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		path := "/compute"
		if i%20 == 0 {
			path = "/watch"
		}
		c := client
		if path == "/watch" {
			c = once
		}
		go func(p string) {
			resp, err := c.Get("http://" + addr + p)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}(path)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	workers := flag.Int("workers", 8, "worker pool size")
	rps := flag.Int("rps", 50, "requests a second from the built-in load generator (0: none)")
	flag.Parse()
	for i := 0; i < *workers; i++ {
		go worker()
	}
	go refresher()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/compute", handleCompute)
	http.HandleFunc("/watch", handleWatch)
	fmt.Printf("serving on http://%s\n", ln.Addr())
	if *rps > 0 {
		go load(ln.Addr().String(), *rps)
	}
	log.Fatal(http.Serve(ln, nil))
}
