// Command runtime-layouts extracts, for each Go toolchain named on the command line, the parts of the Go
// runtime's data layout that goroscope depends on, and writes them as JSON.
//
// For every toolchain it builds a tiny probe program (with DWARF) and reads from the binary:
//   - field offsets and sizes of runtime.g, runtime.m and runtime.p;
//   - the formal parameters, in order, of the runtime functions goroscope attaches uprobes to;
//
// and from that toolchain's own runtime source ($GOROOT/src):
//   - the waitReason constants and waitReasonStrings (what goroutine dumps print);
//   - the goroutine status constants and gStatusStrings;
//   - the rule isSystemGoroutine uses to hide runtime goroutines from runtime.Stack(buf, true).
//
// Usage (from this directory; see README.md and generate.sh):
//
//	go run . -out ../../agent/src/gobinary/runtime-layouts.json 1.19 1.21.13 1.22.12 ...
//	go run . -out - local        # print the entry of the machine's own toolchain to stdout
//
// A version is "local" (the go on PATH, GOTOOLCHAIN=local), "1.19"/"1.19.N" (Debian's golang-1.19-go,
// see -go119), or "1.N.P" (fetched from the module proxy through GOTOOLCHAIN=go1.N.P).
// With -out FILE, entries of FILE for other Go versions are kept; the versions generated replace theirs.
package main

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Schema is bumped when the JSON's shape changes incompatibly.
const Schema = 1

// Field is one member of a runtime struct; offsets are from the start of the outer struct.
type Field struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Type   string `json:"type"`
}

// Struct is a runtime struct type. A field absent in this version is null.
type Struct struct {
	Type   string            `json:"type"`
	Size   int64             `json:"size"`
	Fields map[string]*Field `json:"fields"`
}

// Param is a formal parameter (or result) of a runtime function.
type Param struct {
	Name string `json:"name"`
	// Type is the Go source type; DWARFType is the type's name in the binary's DWARF.
	Type      string `json:"type"`
	DWARFType string `json:"dwarfType"`
	Size      int64  `json:"size"`
	// Register is the amd64 ABIInternal integer register the value arrives in, or null when it is not a
	// single integer-class word (then the caller must work it out) or the registers are exhausted.
	Register *string `json:"register"`
	// Fields of a struct (or string) passed in registers, one integer-class word each, with the register
	// ABIInternal gives each: startTheWorldWithSema's worldStop, throw's string. Absent otherwise.
	Fields []ParamField `json:"fields,omitempty"`
}

// ParamField is one register-assigned member of a struct parameter.
type ParamField struct {
	Name     string `json:"name"`
	Offset   int64  `json:"offset"`
	Size     int64  `json:"size"`
	Register string `json:"register"`
}

// Func describes a runtime function goroscope may attach a uprobe to.
type Func struct {
	// Symbol reports whether the probe binary's ELF symbol table has the function (an out-of-line copy).
	Symbol bool `json:"symbol"`
	// Inlinable reports whether the compiler may inline the function (DWARF has an abstract DW_AT_inline
	// subprogram for it); then some or all calls have no uprobe-able entry.
	Inlinable bool    `json:"inlinable"`
	Params    []Param `json:"params"`
	Results   []Param `json:"results"`
}

// ConditionalStart is a runtime start function that isSystemGoroutine counts as a user goroutine only
// while it runs user code (finalizers, cleanups).
type ConditionalStart struct {
	Function string `json:"function"`
	// SystemWhen is the Go expression isSystemGoroutine returns for it (true = system goroutine).
	SystemWhen string `json:"systemWhen"`
	// FixedIsUser: in "fixed" mode (used for goroutine profiles), it always counts as a user goroutine.
	FixedIsUser bool `json:"fixedIsUser"`
}

// SystemRule is isSystemGoroutine's rule, taken from runtime/traceback.go.
type SystemRule struct {
	Rule               string             `json:"rule"`
	SystemPrefix       string             `json:"systemPrefix"`
	UserStartFunctions []string           `json:"userStartFunctions"`
	ConditionalStart   []ConditionalStart `json:"conditionalStartFunctions"`
	UnknownStartIsUser bool               `json:"unknownStartIsUser"`
}

// Entry is the layout of one Go minor version.
type Entry struct {
	GoVersion string `json:"goVersion"`
	Toolchain string `json:"toolchain"`

	G Struct `json:"g"`
	M Struct `json:"m"`
	P Struct `json:"p"`
	// Panic is runtime._panic (fatalpanic's argument); MStats is runtime.mstats (the type of runtime.memstats).
	Panic  Struct `json:"panic"`
	MStats Struct `json:"mstats"`
	// Work is runtime.workType (the type of runtime.work): pauseStart, the GC pause start before Go 1.22
	// (null since, when stopTheWorldWithSema returns it in a worldStop).
	Work Struct `json:"work"`
	// Sched is runtime.schedt (the type of runtime.sched): goidgen, the last goroutine id handed out in
	// batches to the Ps (each P's unused ids are p.goidcache up to p.goidcacheend).
	Sched Struct `json:"sched"`

	IntArgRegisters []string        `json:"intArgRegisters"`
	Functions       map[string]Func `json:"functions"`

	WaitReasonNames   []string `json:"waitReasonNames"`
	WaitReasonStrings []string `json:"waitReasonStrings"`
	// WaitReasonUnknown is what waitReason.String() returns for a value outside waitReasonStrings.
	WaitReasonUnknown string `json:"waitReasonUnknown"`

	// StwReasonStrings is stwReasonStrings (index = the stwReason value stopTheWorldWithSema gets), from Go
	// 1.21; empty before, when stopTheWorld's reason is a string left in m.preemptoff.
	StwReasonStrings []string `json:"stwReasonStrings"`

	Statuses map[string]int64 `json:"statuses"`
	// StatusStrings is gStatusStrings (index = status without the scan bit); a status beyond it prints
	// StatusUnknown.
	StatusStrings []string `json:"statusStrings"`
	StatusUnknown string   `json:"statusUnknown"`
	ScanBit       int64    `json:"scanBit"`
	// WaitReasonStatuses are the statuses for which a goroutine dump prints the wait reason (when
	// non-zero) instead of the status string.
	WaitReasonStatuses []string `json:"waitReasonStatuses"`

	SystemGoroutines SystemRule `json:"systemGoroutines"`
}

// File is the whole JSON document.
type File struct {
	Schema      int                        `json:"schema"`
	GeneratedBy string                     `json:"generatedBy"`
	Versions    map[string]json.RawMessage `json:"versions"`
}

var intArgRegisters = []string{"RAX", "RBX", "RCX", "RDI", "RSI", "R8", "R9", "R10", "R11"}

// Fields extracted from each struct: output name -> dotted member path.
var gFields = []string{"goid", "parentGoid", "gopc", "startpc", "atomicstatus", "waitreason", "waitsince",
	"stackguard0", "stack", "stack.lo", "stack.hi", "sched", "sched.sp", "sched.pc", "sched.bp", "sched.g",
	"schedlink", "m", "labels", "lockedm"}
var gOptional = map[string]bool{"parentGoid": true, "lockedm": true}
var mFields = []string{"g0", "curg", "procid", "id", "p", "preemptoff"}
var pFields = []string{"id", "status", "m", "goidcache", "goidcacheend"}

var probeFunctions = []string{"newproc1", "gopark", "goready", "goexit1", "ready", "injectglist",
	"stopTheWorldWithSema", "startTheWorldWithSema", "gcMarkTermination", "throw", "fatal", "fatalpanic"}
var panicFields = []string{"arg", "link"}
var mstatsFields = []string{"numgc", "last_gc_nanotime"}
var workFields = []string{"pauseStart"}
var workOptional = map[string]bool{"pauseStart": true}
var schedFields = []string{"goidgen"}

const systemRuleText = "A goroutine is a system goroutine (hidden by runtime.Stack(buf, true) and goroutine dumps " +
	"at GOTRACEBACK<=1) iff the name of its start function (g.startpc) begins with systemPrefix, except that " +
	"userStartFunctions are always user goroutines and conditionalStartFunctions are system goroutines only " +
	"while systemWhen holds (i.e. they count as user while running user code). An unknown start PC counts as user."

func main() {
	out := flag.String("out", "-", "JSON file to update (entries for other versions are kept), or - for stdout")
	go119 := flag.String("go119", "/usr/lib/go-1.19/bin/go", "go command of Go 1.19 (Debian's golang-1.19-go)")
	keep := flag.Bool("keep", false, "keep the probe's temporary build directory")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: runtime-layouts [-out FILE|-] [-go119 PATH] VERSION...\n"+
			"VERSION: local | 1.19 | 1.N.P (fetched through GOTOOLCHAIN)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	generated := map[string]json.RawMessage{}
	for _, v := range flag.Args() {
		e, err := generate(v, *go119, *keep)
		if err != nil {
			fmt.Fprintf(os.Stderr, "runtime-layouts: %s: %v\n", v, err)
			os.Exit(1)
		}
		if _, dup := generated[e.GoVersion]; dup {
			fmt.Fprintf(os.Stderr, "runtime-layouts: two toolchains given for Go %s\n", e.GoVersion)
			os.Exit(1)
		}
		raw := marshal(e, "")
		generated[e.GoVersion] = raw
		fmt.Fprintf(os.Stderr, "runtime-layouts: Go %s from %s\n", e.GoVersion, e.Toolchain)
	}
	doc := File{Schema: Schema, GeneratedBy: "scripts/runtime-layouts", Versions: map[string]json.RawMessage{}}
	if *out != "-" {
		if old, err := os.ReadFile(*out); err == nil {
			var prev File
			if err := json.Unmarshal(old, &prev); err != nil {
				fmt.Fprintf(os.Stderr, "runtime-layouts: %s: %v\n", *out, err)
				os.Exit(1)
			}
			if prev.Schema == Schema {
				for k, v := range prev.Versions {
					doc.Versions[k] = v
				}
			}
		}
	}
	for k, v := range generated {
		doc.Versions[k] = v
	}
	buf := marshal(doc, "  ")
	if *out == "-" {
		os.Stdout.Write(buf)
		return
	}
	if err := os.WriteFile(*out, buf, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "runtime-layouts: %v\n", err)
		os.Exit(1)
	}
}

// marshal encodes JSON without HTML escaping (the Go expressions in it have & and <), ending in a newline
// when indented.
func marshal(v any, indent string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	if indent == "" {
		return bytes.TrimRight(b.Bytes(), "\n")
	}
	return b.Bytes()
}

// toolchain returns the go command and environment for a version argument.
func toolchain(version, go119 string) (string, []string, error) {
	env := append(os.Environ(), "GOFLAGS=-buildvcs=false", "GO111MODULE=on", "GOWORK=off", "CGO_ENABLED=0",
		"GOOS=linux", "GOARCH=amd64")
	switch {
	case version == "local":
		return "go", append(env, "GOTOOLCHAIN=local"), nil
	case version == "1.19" || strings.HasPrefix(version, "1.19."):
		if _, err := os.Stat(go119); err != nil {
			return "", nil, fmt.Errorf("Go 1.19 needs Debian's golang-1.19-go: %v", err)
		}
		return go119, append(env, "GOTOOLCHAIN=local"), nil
	case regexp.MustCompile(`^1\.\d+\.\d+$`).MatchString(version):
		return "go", append(env, "GOTOOLCHAIN=go"+version), nil
	}
	return "", nil, fmt.Errorf("version %q: want local, 1.19 or 1.N.P", version)
}

func run(dir, cmd string, env []string, args ...string) (string, error) {
	c := exec.Command(cmd, args...)
	c.Dir = dir
	c.Env = env
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", cmd, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

const probeSource = `package main

import (
	"fmt"
	"sync"
	"time"
)

func main() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ch := make(chan int)
	wg.Add(1)
	go func() {
		defer wg.Done()
		mu.Lock()
		time.Sleep(time.Millisecond)
		mu.Unlock()
		ch <- 1
	}()
	fmt.Println(<-ch)
	wg.Wait()
}
`

func generate(version, go119 string, keep bool) (*Entry, error) {
	cmd, env, err := toolchain(version, go119)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "runtime-layouts-")
	if err != nil {
		return nil, err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "runtime-layouts: probe directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	goVersion, err := run(dir, cmd, env, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`^go(1\.(\d+))(\.\d+)?`).FindStringSubmatch(goVersion)
	if m == nil {
		return nil, fmt.Errorf("unexpected GOVERSION %q", goVersion)
	}
	goroot, err := run(dir, cmd, env, "env", "GOROOT")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module layoutprobe\n\ngo 1.19\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o644); err != nil {
		return nil, err
	}
	if _, err := run(dir, cmd, env, "build", "-trimpath", "-o", "probe", "."); err != nil {
		return nil, err
	}
	e := &Entry{GoVersion: m[1], Toolchain: goVersion, IntArgRegisters: intArgRegisters}
	src, err := readSource(goroot)
	if err != nil {
		return nil, fmt.Errorf("runtime source in %s: %w", goroot, err)
	}
	if err := readBinary(filepath.Join(dir, "probe"), e, src); err != nil {
		return nil, fmt.Errorf("probe binary: %w", err)
	}
	if err := src.fill(e); err != nil {
		return nil, fmt.Errorf("runtime source in %s: %w", goroot, err)
	}
	return e, nil
}

// ---------------------------------------------------------------------------------------------------
// DWARF

type dwarfInfo struct {
	d       *dwarf.Data
	structs map[string]dwarf.Offset
	funcs   map[string][]*dwarf.Entry // formal parameters of named subprograms
	inline  map[string]bool
}

func readBinary(path string, e *Entry, src *sourceInfo) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return fmt.Errorf("no DWARF: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return err
	}
	symbols := map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			symbols[s.Name] = true
		}
	}
	info := &dwarfInfo{d: d, structs: map[string]dwarf.Offset{}, funcs: map[string][]*dwarf.Entry{}, inline: map[string]bool{}}
	wantStruct := map[string]bool{"runtime.g": true, "runtime.m": true, "runtime.p": true, "runtime._panic": true,
		"runtime.mstats": true, "runtime.workType": true, "runtime.schedt": true}
	wantFunc := map[string]bool{}
	for _, fn := range probeFunctions {
		wantFunc["runtime."+fn] = true
	}
	r := d.Reader()
	for {
		ent, err := r.Next()
		if err != nil {
			return err
		}
		if ent == nil {
			break
		}
		name, _ := ent.Val(dwarf.AttrName).(string)
		switch ent.Tag {
		case dwarf.TagStructType:
			if wantStruct[name] {
				if _, seen := info.structs[name]; !seen {
					info.structs[name] = ent.Offset
				}
			}
		case dwarf.TagSubprogram:
			if wantFunc[name] && ent.Val(dwarf.AttrInline) != nil {
				info.inline[name] = true
			}
			if wantFunc[name] && ent.Children {
				if _, seen := info.funcs[name]; seen {
					r.SkipChildren()
					continue
				}
				var params []*dwarf.Entry
				for {
					c, err := r.Next()
					if err != nil {
						return err
					}
					if c == nil || c.Tag == 0 {
						break
					}
					if c.Tag == dwarf.TagFormalParameter {
						params = append(params, c)
					}
					if c.Children {
						r.SkipChildren()
					}
				}
				info.funcs[name] = params
				continue
			}
		}
		if ent.Tag == dwarf.TagSubprogram && ent.Children {
			r.SkipChildren()
		}
	}
	if e.G, err = info.structLayout("runtime.g", gFields, gOptional); err != nil {
		return err
	}
	if e.M, err = info.structLayout("runtime.m", mFields, nil); err != nil {
		return err
	}
	if e.P, err = info.structLayout("runtime.p", pFields, nil); err != nil {
		return err
	}
	if e.Panic, err = info.structLayout("runtime._panic", panicFields, nil); err != nil {
		return err
	}
	if e.MStats, err = info.structLayout("runtime.mstats", mstatsFields, nil); err != nil {
		return err
	}
	if e.Work, err = info.structLayout("runtime.workType", workFields, workOptional); err != nil {
		return err
	}
	if e.Sched, err = info.structLayout("runtime.schedt", schedFields, nil); err != nil {
		return err
	}
	e.Functions = map[string]Func{}
	for _, fn := range probeFunctions {
		full := "runtime." + fn
		ents, ok := info.funcs[full]
		if !ok {
			return fmt.Errorf("no DWARF subprogram %s", full)
		}
		srcParams, srcResults, err := src.signature(fn)
		if err != nil {
			return err
		}
		var params, results []Param
		for _, pe := range ents {
			name, _ := pe.Val(dwarf.AttrName).(string)
			typeOff, _ := pe.Val(dwarf.AttrType).(dwarf.Offset)
			typ, err := d.Type(typeOff)
			if err != nil {
				return fmt.Errorf("%s parameter %s: %w", full, name, err)
			}
			p := Param{Name: name, DWARFType: typeName(typ), Size: typ.Size()}
			if isResult, _ := pe.Val(dwarf.AttrVarParam).(bool); isResult {
				results = append(results, p)
			} else {
				params = append(params, p)
			}
		}
		if err := matchSignature(full, params, srcParams); err != nil {
			return err
		}
		if err := matchSignature(full+" results", results, srcResults); err != nil {
			return err
		}
		if err := info.assignRegisters(full, ents, params); err != nil {
			return err
		}
		if err := info.assignRegisters(full, ents, results); err != nil {
			return err
		}
		if params == nil {
			params = []Param{}
		}
		if results == nil {
			results = []Param{}
		}
		e.Functions[fn] = Func{Symbol: symbols[full], Inlinable: info.inline[full], Params: params, Results: results}
	}
	return nil
}

// matchSignature checks DWARF's parameter names and order against the source's, and copies source types.
func matchSignature(what string, dw []Param, src []srcParam) error {
	var dn, sn []string
	for _, p := range dw {
		dn = append(dn, p.Name)
	}
	for _, p := range src {
		sn = append(sn, p.name)
	}
	if strings.Join(dn, ",") != strings.Join(sn, ",") {
		return fmt.Errorf("%s: DWARF parameters (%s) differ from the source's (%s)", what,
			strings.Join(dn, ", "), strings.Join(sn, ", "))
	}
	for i := range dw {
		dw[i].Type = src[i].typ
	}
	return nil
}

// assignRegisters fills Register for each parameter that is one integer-class word, and Fields for a struct
// whose members all are, in ABIInternal order; it stops at the first parameter that is neither (what follows
// needs the full ABI algorithm) or that no longer fits in the registers left.
func (info *dwarfInfo) assignRegisters(fn string, ents []*dwarf.Entry, ps []Param) error {
	byName := map[string]dwarf.Offset{}
	for _, pe := range ents {
		name, _ := pe.Val(dwarf.AttrName).(string)
		byName[name], _ = pe.Val(dwarf.AttrType).(dwarf.Offset)
	}
	next := 0
	for i := range ps {
		t, err := info.d.Type(byName[ps[i].Name])
		if err != nil {
			return fmt.Errorf("%s %s: %w", fn, ps[i].Name, err)
		}
		t = stripTypedefs(t)
		if oneWord(t) {
			if next >= len(intArgRegisters) {
				return nil
			}
			reg := intArgRegisters[next]
			ps[i].Register = &reg
			next++
			continue
		}
		st, ok := t.(*dwarf.StructType)
		if !ok || len(st.Field) == 0 || next+len(st.Field) > len(intArgRegisters) {
			return nil
		}
		var fields []ParamField
		for _, f := range st.Field {
			if !oneWord(stripTypedefs(f.Type)) {
				return nil
			}
			fields = append(fields, ParamField{Name: f.Name, Offset: f.ByteOffset, Size: f.Type.Size(),
				Register: intArgRegisters[next+len(fields)]})
		}
		ps[i].Fields = fields
		next += len(fields)
	}
	return nil
}

func stripTypedefs(t dwarf.Type) dwarf.Type {
	for {
		td, ok := t.(*dwarf.TypedefType) // Go's func, chan and map types are typedefs of pointers
		if !ok {
			return t
		}
		t = td.Type
	}
}

// oneWord: an integer-class value of one word (pointer, bool, integer, func value), one register's worth.
func oneWord(t dwarf.Type) bool {
	switch t.(type) {
	case *dwarf.PtrType, *dwarf.BoolType, *dwarf.IntType, *dwarf.UintType, *dwarf.CharType, *dwarf.UcharType:
		return t.Size() > 0 && t.Size() <= 8
	case *dwarf.FuncType: // a Go func value is one pointer (to a funcval)
		return true
	}
	return false
}

func typeName(t dwarf.Type) string {
	if n := t.Common().Name; n != "" {
		return n
	}
	if pt, ok := t.(*dwarf.PtrType); ok { // debug/dwarf leaves pointer types unnamed
		if _, void := pt.Type.(*dwarf.VoidType); void {
			return "unsafe.Pointer"
		}
		return "*" + typeName(pt.Type)
	}
	return t.String()
}

func (info *dwarfInfo) structLayout(name string, fields []string, optional map[string]bool) (Struct, error) {
	off, ok := info.structs[name]
	if !ok {
		return Struct{}, fmt.Errorf("no DWARF struct %s", name)
	}
	typ, err := info.d.Type(off)
	if err != nil {
		return Struct{}, err
	}
	st, ok := typ.(*dwarf.StructType)
	if !ok {
		return Struct{}, fmt.Errorf("%s is a %T", name, typ)
	}
	s := Struct{Type: name, Size: st.Size(), Fields: map[string]*Field{}}
	for _, path := range fields {
		f, err := lookup(st, path)
		if err != nil {
			if optional[path] || errors.Is(err, errNoField) && optional[strings.Split(path, ".")[0]] {
				s.Fields[path] = nil
				continue
			}
			return Struct{}, fmt.Errorf("%s.%s: %w", name, path, err)
		}
		s.Fields[path] = f
	}
	return s, nil
}

var errNoField = errors.New("no such field")

func lookup(st *dwarf.StructType, path string) (*Field, error) {
	var off int64
	var cur dwarf.Type = st
	for _, part := range strings.Split(path, ".") {
		for {
			td, ok := cur.(*dwarf.TypedefType)
			if !ok {
				break
			}
			cur = td.Type
		}
		s, ok := cur.(*dwarf.StructType)
		if !ok {
			return nil, fmt.Errorf("%s: not a struct", part)
		}
		var found *dwarf.StructField
		for _, f := range s.Field {
			if f.Name == part {
				found = f
				break
			}
		}
		if found == nil {
			return nil, errNoField
		}
		off += found.ByteOffset
		cur = found.Type
	}
	return &Field{Offset: off, Size: cur.Size(), Type: typeName(cur)}, nil
}

// ---------------------------------------------------------------------------------------------------
// Runtime source

type srcParam struct{ name, typ string }

type sourceInfo struct {
	fset      *token.FileSet
	runtime2  *ast.File
	traceback *ast.File
	proc      *ast.File
	mgc       *ast.File
	panic     *ast.File
	funcIDs   map[string]string // FuncID constant suffix (after "FuncID_") -> function name in package runtime
}

func readSource(goroot string) (*sourceInfo, error) {
	s := &sourceInfo{fset: token.NewFileSet()}
	rt := filepath.Join(goroot, "src", "runtime")
	var err error
	for _, f := range []struct {
		dst  **ast.File
		name string
	}{{&s.runtime2, "runtime2.go"}, {&s.traceback, "traceback.go"}, {&s.proc, "proc.go"}, {&s.mgc, "mgc.go"},
		{&s.panic, "panic.go"}} {
		if *f.dst, err = parser.ParseFile(s.fset, filepath.Join(rt, f.name), nil, 0); err != nil {
			return nil, err
		}
	}
	objabi, err := parser.ParseFile(s.fset, filepath.Join(goroot, "src", "cmd", "internal", "objabi", "funcid.go"), nil, 0)
	if err != nil {
		return nil, err
	}
	lit := findVarLit(objabi, "funcIDs")
	if lit == nil {
		return nil, errors.New("cmd/internal/objabi/funcid.go: no funcIDs map")
	}
	s.funcIDs = map[string]string{}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			return nil, errors.New("funcIDs: unexpected element")
		}
		key, err := stringLit(kv.Key)
		if err != nil {
			return nil, fmt.Errorf("funcIDs: %w", err)
		}
		s.funcIDs[funcIDSuffix(identName(kv.Value))] = "runtime." + key
	}
	return s, nil
}

// funcIDSuffix turns FuncID_runtime_main, abi.FuncID_runtime_main or funcID_runtime_main into runtime_main.
func funcIDSuffix(name string) string {
	if i := strings.Index(name, "uncID_"); i >= 0 {
		return name[i+len("uncID_"):]
	}
	return name
}

func identName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return identName(x.X) + "." + x.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, error) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", fmt.Errorf("not a string literal")
	}
	return strconv.Unquote(bl.Value)
}

func (s *sourceInfo) exprString(e ast.Node) string {
	var b bytes.Buffer
	printer.Fprint(&b, s.fset, e)
	return b.String()
}

func findVarLit(f *ast.File, name string) *ast.CompositeLit {
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, sp := range gd.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name == name && i < len(vs.Values) {
					if cl, ok := vs.Values[i].(*ast.CompositeLit); ok {
						return cl
					}
				}
			}
		}
	}
	return nil
}

func findFunc(f *ast.File, name string, recv bool) *ast.FuncDecl {
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if ok && fd.Name.Name == name && (fd.Recv != nil) == recv {
			return fd
		}
	}
	return nil
}

func (s *sourceInfo) signature(fn string) ([]srcParam, []srcParam, error) {
	var fd *ast.FuncDecl
	for _, f := range []*ast.File{s.proc, s.mgc, s.panic} {
		if fd = findFunc(f, fn, false); fd != nil {
			break
		}
	}
	if fd == nil {
		return nil, nil, fmt.Errorf("runtime/{proc,mgc,panic}.go: no func %s", fn)
	}
	list := func(fl *ast.FieldList) []srcParam {
		var ps []srcParam
		if fl == nil {
			return ps
		}
		for _, f := range fl.List {
			t := s.exprString(f.Type)
			if len(f.Names) == 0 {
				ps = append(ps, srcParam{name: "", typ: t})
			}
			for _, n := range f.Names {
				ps = append(ps, srcParam{name: n.Name, typ: t})
			}
		}
		return ps
	}
	params, results := list(fd.Type.Params), list(fd.Type.Results)
	// The compiler names unnamed results ~r0, ~r1, ... in DWARF.
	for i := range results {
		if results[i].name == "" {
			results[i].name = "~r" + strconv.Itoa(i)
		}
	}
	return params, results, nil
}

// constBlock evaluates the const block that declares first, returning names in order and their values.
func constBlock(f *ast.File, first string) ([]string, map[string]int64, error) {
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST || len(gd.Specs) == 0 {
			continue
		}
		found := false
		for _, sp := range gd.Specs {
			if vs := sp.(*ast.ValueSpec); len(vs.Names) > 0 && vs.Names[0].Name == first {
				found = true
			}
		}
		if !found {
			continue
		}
		env := map[string]constant.Value{}
		var names []string
		values := map[string]int64{}
		var last []ast.Expr
		for iota, sp := range gd.Specs {
			vs := sp.(*ast.ValueSpec)
			exprs := vs.Values
			if len(exprs) == 0 {
				exprs = last
			} else {
				last = exprs
			}
			if len(exprs) != len(vs.Names) {
				return nil, nil, fmt.Errorf("const block of %s: cannot evaluate %s", first, vs.Names[0].Name)
			}
			for i, n := range vs.Names {
				v, err := evalConst(exprs[i], int64(iota), env)
				if err != nil {
					return nil, nil, fmt.Errorf("const %s: %w", n.Name, err)
				}
				if n.Name == "_" {
					continue
				}
				iv, ok := constant.Int64Val(v)
				if !ok {
					return nil, nil, fmt.Errorf("const %s is not an integer", n.Name)
				}
				env[n.Name] = v
				names = append(names, n.Name)
				values[n.Name] = iv
			}
		}
		return names, values, nil
	}
	return nil, nil, fmt.Errorf("no const block declaring %s", first)
}

func evalConst(e ast.Expr, iota int64, env map[string]constant.Value) (constant.Value, error) {
	switch x := e.(type) {
	case *ast.BasicLit:
		v := constant.MakeFromLiteral(x.Value, x.Kind, 0)
		if v.Kind() == constant.Unknown {
			return nil, fmt.Errorf("bad literal %s", x.Value)
		}
		return v, nil
	case *ast.Ident:
		if x.Name == "iota" {
			return constant.MakeInt64(iota), nil
		}
		if v, ok := env[x.Name]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("unknown name %s", x.Name)
	case *ast.ParenExpr:
		return evalConst(x.X, iota, env)
	case *ast.UnaryExpr:
		v, err := evalConst(x.X, iota, env)
		if err != nil {
			return nil, err
		}
		return constant.UnaryOp(x.Op, v, 0), nil
	case *ast.BinaryExpr:
		a, err := evalConst(x.X, iota, env)
		if err != nil {
			return nil, err
		}
		b, err := evalConst(x.Y, iota, env)
		if err != nil {
			return nil, err
		}
		if x.Op == token.SHL || x.Op == token.SHR {
			n, ok := constant.Uint64Val(b)
			if !ok {
				return nil, errors.New("bad shift")
			}
			return constant.Shift(a, x.Op, uint(n)), nil
		}
		return constant.BinaryOp(a, x.Op, b), nil
	}
	return nil, fmt.Errorf("cannot evaluate %T", e)
}

// indexedStrings reads an array literal like waitReasonStrings = [...]string{waitReasonZero: "", ...}.
func indexedStrings(lit *ast.CompositeLit, values map[string]int64) ([]string, error) {
	out := map[int64]string{}
	var max int64 = -1
	var next int64
	for _, el := range lit.Elts {
		idx, val := next, el
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			id, ok := kv.Key.(*ast.Ident)
			if !ok {
				return nil, errors.New("unexpected key")
			}
			v, ok := values[id.Name]
			if !ok {
				return nil, fmt.Errorf("unknown key %s", id.Name)
			}
			idx, val = v, kv.Value
		}
		s, err := stringLit(val)
		if err != nil {
			return nil, err
		}
		if _, dup := out[idx]; dup {
			return nil, fmt.Errorf("index %d twice", idx)
		}
		out[idx] = s
		if idx > max {
			max = idx
		}
		next = idx + 1
	}
	res := make([]string, max+1)
	for i, s := range out {
		res[i] = s
	}
	return res, nil
}

func (s *sourceInfo) fill(e *Entry) error {
	// Wait reasons.
	wrNames, wrValues, err := constBlock(s.runtime2, "waitReasonZero")
	if err != nil {
		return err
	}
	for i, n := range wrNames {
		if wrValues[n] != int64(i) {
			return fmt.Errorf("waitReason %s = %d, want %d (not a plain iota sequence)", n, wrValues[n], i)
		}
	}
	lit := findVarLit(s.runtime2, "waitReasonStrings")
	if lit == nil {
		return errors.New("no waitReasonStrings")
	}
	wrStrings, err := indexedStrings(lit, wrValues)
	if err != nil {
		return fmt.Errorf("waitReasonStrings: %w", err)
	}
	for len(wrStrings) < len(wrNames) {
		wrStrings = append(wrStrings, "")
	}
	e.WaitReasonNames, e.WaitReasonStrings = wrNames, wrStrings
	var strFn *ast.FuncDecl
	for _, d := range s.runtime2.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil && fd.Name.Name == "String" &&
			s.exprString(fd.Recv.List[0].Type) == "waitReason" {
			strFn = fd
		}
	}
	if strFn == nil {
		return errors.New("no waitReason.String")
	}
	ast.Inspect(strFn.Body, func(n ast.Node) bool {
		if rs, ok := n.(*ast.ReturnStmt); ok && len(rs.Results) == 1 && e.WaitReasonUnknown == "" {
			if v, err := stringLit(rs.Results[0]); err == nil {
				e.WaitReasonUnknown = v
			}
		}
		return true
	})
	if e.WaitReasonUnknown == "" {
		return errors.New("waitReason.String: no fallback string")
	}

	// Stop-the-world reasons (Go 1.21+).
	e.StwReasonStrings = []string{}
	if lit := findVarLit(s.proc, "stwReasonStrings"); lit != nil {
		_, stwValues, err := constBlock(s.proc, "stwUnknown")
		if err != nil {
			return fmt.Errorf("stwReason: %w", err)
		}
		if e.StwReasonStrings, err = indexedStrings(lit, stwValues); err != nil {
			return fmt.Errorf("stwReasonStrings: %w", err)
		}
	}

	// Goroutine statuses.
	stNames, stValues, err := constBlock(s.runtime2, "_Gidle")
	if err != nil {
		return err
	}
	e.Statuses = map[string]int64{}
	for _, n := range stNames {
		e.Statuses[n] = stValues[n]
	}
	scan, ok := stValues["_Gscan"]
	if !ok {
		return errors.New("no _Gscan")
	}
	e.ScanBit = scan
	lit = findVarLit(s.traceback, "gStatusStrings")
	if lit == nil {
		return errors.New("no gStatusStrings")
	}
	if e.StatusStrings, err = indexedStrings(lit, stValues); err != nil {
		return fmt.Errorf("gStatusStrings: %w", err)
	}
	hdr := findFunc(s.traceback, "goroutineheader", false)
	if hdr == nil {
		return errors.New("no goroutineheader")
	}
	ast.Inspect(hdr.Body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.AssignStmt:
			// status = "???"
			if len(x.Lhs) == 1 && identName(x.Lhs[0]) == "status" && len(x.Rhs) == 1 {
				if v, err := stringLit(x.Rhs[0]); err == nil {
					e.StatusUnknown = v
				}
			}
		case *ast.IfStmt:
			// if (gpstatus == _Gwaiting || ...) && gp.waitreason != waitReasonZero { status = gp.waitreason.String() }
			if len(x.Body.List) == 1 && strings.Contains(s.exprString(x.Body.List[0]), "waitreason.String()") {
				ast.Inspect(x.Cond, func(n ast.Node) bool {
					if be, ok := n.(*ast.BinaryExpr); ok && be.Op == token.EQL && identName(be.X) == "gpstatus" {
						e.WaitReasonStatuses = append(e.WaitReasonStatuses, identName(be.Y))
					}
					return true
				})
			}
		}
		return true
	})
	if e.StatusUnknown == "" || len(e.WaitReasonStatuses) == 0 {
		return errors.New("goroutineheader: unexpected shape")
	}
	for _, st := range e.WaitReasonStatuses {
		if _, ok := stValues[st]; !ok {
			return fmt.Errorf("goroutineheader: unknown status %s", st)
		}
	}

	// isSystemGoroutine.
	return s.systemRule(e)
}

// returnsFalse reports whether a block is just `return false`.
func returnsFalse(b *ast.BlockStmt) bool {
	if len(b.List) != 1 {
		return false
	}
	rs, ok := b.List[0].(*ast.ReturnStmt)
	return ok && len(rs.Results) == 1 && identName(rs.Results[0]) == "false"
}

func (s *sourceInfo) systemRule(e *Entry) error {
	fd := findFunc(s.traceback, "isSystemGoroutine", false)
	if fd == nil {
		return errors.New("no isSystemGoroutine")
	}
	rule := SystemRule{Rule: systemRuleText, UserStartFunctions: []string{}, ConditionalStart: []ConditionalStart{}}
	funcIDsIn := func(cond ast.Expr) ([]string, error) {
		var names []string
		var err error
		ast.Inspect(cond, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if ok && be.Op == token.EQL && strings.HasSuffix(identName(be.X), ".funcID") {
				id := funcIDSuffix(identName(be.Y))
				fn, known := s.funcIDs[id]
				if !known {
					err = fmt.Errorf("isSystemGoroutine: funcID %s has no function in objabi.funcIDs", id)
				}
				names = append(names, fn)
			}
			return true
		})
		return names, err
	}
	for _, st := range fd.Body.List {
		switch x := st.(type) {
		case *ast.IfStmt:
			if s.exprString(x.Cond) == "!f.valid()" {
				if !returnsFalse(x.Body) {
					return errors.New("isSystemGoroutine: unexpected invalid-PC branch")
				}
				rule.UnknownStartIsUser = true
				continue
			}
			names, err := funcIDsIn(x.Cond)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				return fmt.Errorf("isSystemGoroutine: unexpected condition %s", s.exprString(x.Cond))
			}
			if returnsFalse(x.Body) {
				rule.UserStartFunctions = append(rule.UserStartFunctions, names...)
				continue
			}
			// Conditional: `if fixed { return false }` then `return <system when>`.
			c := ConditionalStart{}
			for _, bs := range x.Body.List {
				switch b := bs.(type) {
				case *ast.IfStmt:
					if s.exprString(b.Cond) == "fixed" && returnsFalse(b.Body) {
						c.FixedIsUser = true
					} else {
						return fmt.Errorf("isSystemGoroutine: unexpected %s", s.exprString(b.Cond))
					}
				case *ast.ReturnStmt:
					c.SystemWhen = s.exprString(b.Results[0])
				default:
					return errors.New("isSystemGoroutine: unexpected statement in conditional branch")
				}
			}
			if c.SystemWhen == "" {
				return errors.New("isSystemGoroutine: conditional branch without return")
			}
			for _, n := range names {
				c.Function = n
				rule.ConditionalStart = append(rule.ConditionalStart, c)
			}
		case *ast.ReturnStmt:
			// return hasPrefix(funcname(f), "runtime.")
			call, ok := x.Results[0].(*ast.CallExpr)
			if !ok || !strings.HasSuffix(strings.ToLower(identName(call.Fun)), "hasprefix") || len(call.Args) != 2 ||
				s.exprString(call.Args[0]) != "funcname(f)" {
				return fmt.Errorf("isSystemGoroutine: unexpected final return %s", s.exprString(x))
			}
			p, err := stringLit(call.Args[1])
			if err != nil {
				return err
			}
			rule.SystemPrefix = p
		case *ast.AssignStmt, *ast.DeclStmt:
			// f := findfunc(gp.startpc)
		default:
			return fmt.Errorf("isSystemGoroutine: unexpected statement %T", st)
		}
	}
	if rule.SystemPrefix == "" {
		return errors.New("isSystemGoroutine: no prefix rule")
	}
	sort.Strings(rule.UserStartFunctions)
	e.SystemGoroutines = rule
	return nil
}
