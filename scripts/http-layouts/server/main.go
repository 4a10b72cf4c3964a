// Command server is the reference build scripts/http-layouts reads net/http's layout from: a net/http server
// (HTTP/1 and the HTTP/2 server net/http links in), built with DWARF by each Go toolchain.
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if len(os.Args) > 1 {
		http.ListenAndServe(os.Args[1], nil)
	}
}
