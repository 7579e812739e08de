// SPDX-License-Identifier: Apache-2.0

package container

import (
	"fmt"
	"strings"
)

// Filter selects processes by their pod: the commands' --namespace and
// --pod. The zero Filter selects everything.
type Filter struct {
	Namespaces []string
	// Pods are pod names, NAMESPACE/NAME, or pod uids.
	Pods []string
}

// Empty says whether f selects everything.
func (f *Filter) Empty() bool { return len(f.Namespaces) == 0 && len(f.Pods) == 0 }

// Match says whether id is selected: with a filter, a process outside any
// pod, or in a pod whose names are unknown, is not.
func (f *Filter) Match(id *Identity) bool {
	if f.Empty() {
		return true
	}
	if id == nil || id.PodUID == "" {
		return false
	}
	if len(f.Namespaces) > 0 && !contains(f.Namespaces, id.Namespace) {
		return false
	}
	if len(f.Pods) == 0 {
		return true
	}
	for _, p := range f.Pods {
		if p == id.PodUID || id.Pod != "" && (p == id.Pod || p == id.Namespace+"/"+id.Pod) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x != "" && x == s {
			return true
		}
	}
	return false
}

// CheckName checks a namespace or pod name as Kubernetes allows them (a
// DNS subdomain: lower-case letters, digits, '-' and '.', at most 253
// bytes, starting and ending with a letter or digit), so that a typo is an
// error rather than a filter matching nothing. Pod uids pass too.
func CheckName(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("want a name of 1 to 253 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("%q is not allowed in Kubernetes names (lower-case letters, digits, '-' and '.')", string(rune(c)))
		}
	}
	if strings.Trim(s[:1]+s[len(s)-1:], "-.") != s[:1]+s[len(s)-1:] {
		return fmt.Errorf("a Kubernetes name starts and ends with a letter or digit")
	}
	return nil
}
