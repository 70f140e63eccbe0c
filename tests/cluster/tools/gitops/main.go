// Command gitops-check computes what GitOps tools would say about Kubernetes objects.
//
//	gitops-check kstatus            < objects.json
//	gitops-check lua HEALTH.lua     < objects.json
//
// stdin holds one object or a JSON array of objects; stdout gets one JSON array with one result per object.
// `kstatus` runs sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library Flux and kpt use. `lua` runs an
// Argo CD resource health script in gopher-lua, the interpreter Argo CD embeds, in the sandbox Argo CD gives it by
// default: only the base, table and package libraries, the object as the global `obj`, one second to finish.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// The statuses Argo CD accepts from a health script; anything else it reports as Unknown.
var argoHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type kstatusResult struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

type healthResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-check:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gitops-check kstatus | lua SCRIPT < objects.json")
	}
	objects, err := readObjects(in)
	if err != nil {
		return err
	}
	var results []any
	switch {
	case args[0] == "kstatus" && len(args) == 1:
		results, err = eachObject(objects, computeKstatus)
	case args[0] == "lua" && len(args) == 2:
		script, readErr := os.ReadFile(args[1])
		if readErr != nil {
			return readErr
		}
		results, err = eachObject(objects, func(o map[string]any) (any, error) { return runHealth(string(script), o) })
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(results)
}

func readObjects(in io.Reader) ([]map[string]any, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var many []map[string]any
	if json.Unmarshal(data, &many) == nil {
		return many, nil
	}
	var one map[string]any
	if err := json.Unmarshal(data, &one); err != nil {
		return nil, fmt.Errorf("stdin is neither an object nor an array of objects: %w", err)
	}
	return []map[string]any{one}, nil
}

func eachObject(objects []map[string]any, fn func(map[string]any) (any, error)) ([]any, error) {
	results := make([]any, 0, len(objects))
	for i, o := range objects {
		r, err := fn(o)
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", i, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func computeKstatus(o map[string]any) (any, error) {
	// Through JSON again so that numbers become int64 the way a client decoding an API response sees them.
	u := &unstructured.Unstructured{}
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	res, err := status.Compute(u)
	if err != nil {
		return nil, err
	}
	return kstatusResult{Status: res.Status.String(), Message: res.Message, Conditions: res.Conditions}, nil
}

func runHealth(script string, o map[string]any) (any, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		l.Push(l.NewFunction(open))
		l.Push(lua.LString(name))
		l.Call(1, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, o))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	res := healthResult{Status: lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message"))}
	if !argoHealth[res.Status] {
		return nil, fmt.Errorf("the script returned status %q, which Argo CD does not know", res.Status)
	}
	return res, nil
}

// toLua mirrors how Argo CD hands an object to Lua: maps become tables, lists 1-based arrays.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, item := range x {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case string:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case bool:
		return lua.LBool(x)
	default:
		return lua.LNil
	}
}
