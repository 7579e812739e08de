// SPDX-License-Identifier: Apache-2.0

package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestWriteSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSummary(&buf, "table", summaryOf(ByRemote, groupSockets)); err != nil {
		t.Fatal(err)
	}
	want := `STATE        RADDR                    COUNT  OLDEST
ESTABLISHED  10.0.0.7                     1  -
TIME_WAIT    10.0.0.9                     2  >=50.0s
TIME_WAIT    10.0.0.8                     1  >=1.0s
CLOSE_WAIT   10.0.0.7                     2  >=3m00s
CLOSE_WAIT   10.0.0.9                     1  >=1.0s
LISTEN       0.0.0.0                      1  -  accept queue 0 of backlog 0
total                                     8  in 1 network namespace
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := WriteSummary(&buf, "json", summaryOf(ByProcess, groupSockets)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d JSON lines:\n%s", len(lines), buf.String())
	}
	if want := `{"state":"CLOSE_WAIT","pid":10,"comm":"nginx","count":2,"oldest_age_us":180000000}`; lines[2] != want {
		t.Errorf("JSON line %s, want %s", lines[2], want)
	}
	if want := `{"state":"ESTABLISHED","pid":10,"comm":"nginx","count":1}`; lines[0] != want {
		t.Errorf("JSON line %s, want %s", lines[0], want)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("%s: %v", l, err)
		}
	}
	buf.Reset()
	if err := WriteSummary(&buf, "table", summaryOf(ByState, groupSockets[:1])); err != nil {
		t.Fatal(err)
	}
	if want := "STATE          COUNT  OLDEST\nTIME_WAIT          1  >=3.0s\ntotal              1  in 1 network namespace\n"; buf.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", buf.String(), want)
	}
	if err := WriteSummary(&buf, "xml", NewSummary(ByState)); err == nil {
		t.Error("no error for format xml")
	}
}
