// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the
// library behind Flux's `wait`, kpt and cli-utils, computes for Kubernetes objects.
//
// It reads one object, or a List (`kubectl get -o json`), as JSON or YAML on stdin and
// prints {"status": ..., "message": ...} per object: one JSON object for one input object,
// a JSON array (with namespace and name) for a List.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func compute(object map[string]interface{}) (result, error) {
	u := &unstructured.Unstructured{Object: object}
	computed, err := status.Compute(u)
	if err != nil {
		return result{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return result{Status: computed.Status.String(), Message: computed.Message}, nil
}

func run(stdin io.Reader, stdout io.Writer) error {
	input, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// YAML is a superset of JSON, so one converter takes both.
	document, err := yaml.YAMLToJSON(input)
	if err != nil {
		return fmt.Errorf("stdin is neither JSON nor YAML: %w", err)
	}
	var object map[string]interface{}
	// Kubernetes' decoder keeps integers as int64, as kstatus expects (encoding/json would give float64).
	if err := kjson.Unmarshal(document, &object); err != nil {
		return fmt.Errorf("stdin is not an object: %w", err)
	}
	if object == nil {
		return fmt.Errorf("stdin holds no object")
	}
	var output interface{}
	if items, isList := object["items"].([]interface{}); isList {
		results := []result{}
		for _, item := range items {
			itemObject, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("a List item is not an object")
			}
			r, err := compute(itemObject)
			if err != nil {
				return err
			}
			u := unstructured.Unstructured{Object: itemObject}
			r.Namespace, r.Name = u.GetNamespace(), u.GetName()
			results = append(results, r)
		}
		output = results
	} else {
		r, err := compute(object)
		if err != nil {
			return err
		}
		output = r
	}
	encoder := json.NewEncoder(stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(output)
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
