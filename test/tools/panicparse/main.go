// Reads a goroutine dump on stdin with panicparse (github.com/maruel/panicparse/v2), the tool SREs use on Go
// dumps, and prints what it understood as JSON: goroscope's tests check that its dumps read as Go's do.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/maruel/panicparse/v2/stack"
)

type frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type goroutine struct {
	ID        int     `json:"id"`
	State     string  `json:"state"`
	Frames    []frame `json:"frames"`
	Elided    bool    `json:"elided"`
	CreatedBy []frame `json:"createdBy"`
}

func frames(s stack.Stack) []frame {
	out := []frame{}
	for _, c := range s.Calls {
		out = append(out, frame{c.Func.Complete, c.RemoteSrcPath, c.Line})
	}
	return out
}

func main() {
	opts := stack.DefaultOpts()
	opts.GuessPaths = false
	opts.AnalyzeSources = false
	snap, _, err := stack.ScanSnapshot(os.Stdin, os.Stderr, opts)
	if err != nil && snap == nil {
		fmt.Fprintln(os.Stderr, "panicparse:", err)
		os.Exit(1)
	}
	out := []goroutine{}
	for _, g := range snap.Goroutines {
		out = append(out, goroutine{g.ID, g.State, frames(g.Stack), g.Stack.Elided, frames(g.CreatedBy)})
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
