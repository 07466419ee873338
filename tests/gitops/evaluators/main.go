// Command evaluators runs the status evaluators GitOps tools use, on one resource read as JSON from stdin:
//
//	evaluators kstatus < resource.json
//	    sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute (Flux, kubectl wait-style tooling);
//	    prints {"status": "Current"|"InProgress"|"Failed"|..., "message": "..."}.
//	evaluators argocd-health health.lua < resource.json
//	    runs an Argo CD resource health check in github.com/yuin/gopher-lua with the libraries Argo CD
//	    opens for a health.lua from argocd-cm (package, base, table; no string, math, io or os) and the
//	    resource as the global `obj`; prints {"status": "Healthy"|..., "message": "..."}.
//
// Both exit non-zero with the reason on stderr when the input or the script is unusable.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "evaluators:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: evaluators kstatus | evaluators argocd-health SCRIPT  (resource JSON on stdin)")
	}
	object, err := readObject(stdin)
	if err != nil {
		return err
	}
	var result verdict
	switch {
	case args[0] == "kstatus" && len(args) == 1:
		result, err = kstatus(object)
	case args[0] == "argocd-health" && len(args) == 2:
		var script []byte
		if script, err = os.ReadFile(args[1]); err == nil {
			result, err = argocdHealth(object, string(script))
		}
	default:
		return fmt.Errorf("unknown subcommand or wrong arguments: %q", args)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(result)
}

// readObject decodes a JSON object the way Kubernetes' unstructured decoding does: integers stay int64.
func readObject(r io.Reader) (map[string]any, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("stdin is not a Kubernetes object: %w", err)
	}
	return obj.Object, nil
}

func kstatus(object map[string]any) (verdict, error) {
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		return verdict{}, err
	}
	return verdict{Status: result.Status.String(), Message: result.Message}, nil
}

// Valid health codes, as Argo CD's util/lua checks them: anything else becomes Unknown.
var healthCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

func argocdHealth(object map[string]any, script string) (verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// Argo CD opens these three (plus a reduced os it writes itself, left out here: a script that needs
	// os fails in this harness rather than passing by accident).
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return verdict{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return verdict{}, fmt.Errorf("health script failed: %w", err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	result := verdict{Status: stringField(table, "status"), Message: stringField(table, "message")}
	if !healthCodes[result.Status] {
		return verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return result, nil
}

// toLua converts decoded JSON to Lua values as Argo CD's util/lua decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		array := l.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(l, item))
		}
		return array
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

func stringField(table *lua.LTable, key string) string {
	if value, ok := table.RawGetString(key).(lua.LString); ok {
		return string(value)
	}
	return ""
}
