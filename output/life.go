// SPDX-License-Identifier: Apache-2.0

package output

import (
	"fmt"
	"strconv"

	"github.com/tcpstate/tcpstate/conn"
)

// LifeFormat turns whole connections (tcpstate life) into bytes.
type LifeFormat = RecordFormat[conn.Connection]

// NewLife returns the life format called name: "table" or "json".
func NewLife(name string) (LifeFormat, error) { return NewLifeWith(name, Options{}) }

// NewLifeWith returns the life format called name with options o (Pods;
// Seq does not apply).
func NewLifeWith(name string, o Options) (LifeFormat, error) {
	switch name {
	case "table":
		return &lifeTable{clock: clock{layout: "15:04:05", digits: 3}}, nil
	case "json":
		return &lifeJSON{clock: clock{layout: "2006-01-02T15:04:05", zone: true, digits: 9}, pods: o.Pods}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want table or json)", name)
}

type lifeJSON struct {
	clock clock
	start clock // its own cache: the start is rarely in the end's second
	pods  Identifier
	where netNSCgroupCache
}

func (*lifeJSON) Header() []byte { return nil }

func (f *lifeJSON) Append(dst []byte, c *conn.Connection) []byte {
	if f.start.layout == "" {
		f.start = f.clock
		f.start.prefix = nil
	}
	dst = append(dst, `{"time":"`...)
	dst = f.clock.append(dst, c.Time)
	dst = append(dst, `",`...)
	dst = appendOwnerJSON(dst, c.Pid, c.Comm)
	dst = append(dst, ',')
	dst = appendTupleJSON(dst, c.Family.String(), c.LAddr, c.LPort, c.RAddr, c.RPort)
	dst = append(dst, `,"start":"`...)
	dst = f.start.append(dst, c.Start)
	dst = append(dst, `","duration_us":`...)
	dst = strconv.AppendInt(dst, c.Duration.Microseconds(), 10)
	dst = append(dst, `,"path":[`...)
	for i, st := range c.Path {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"state":"`...)
		dst = appendState(dst, st.State)
		dst = append(dst, `","us":`...)
		dst = strconv.AppendInt(dst, st.Duration.Microseconds(), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"tx_bytes":`...)
	dst = strconv.AppendUint(dst, c.TxBytes, 10)
	dst = append(dst, `,"rx_bytes":`...)
	dst = strconv.AppendUint(dst, c.RxBytes, 10)
	dst = append(dst, `,"retrans":`...)
	dst = strconv.AppendUint(dst, uint64(c.Retrans), 10)
	if c.ClosedBy != "" {
		dst = append(dst, `,"closed_by":"`...)
		dst = append(dst, c.ClosedBy...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"half_close":`...)
	dst = strconv.AppendBool(dst, c.HalfClose)
	dst = appendEndJSON(dst, c.Reset, c.ResetReason, c.Error)
	if c.ISNKnown {
		dst = append(dst, `,"isn":`...)
		dst = strconv.AppendUint(dst, uint64(c.ISN), 10)
		dst = append(dst, `,"peer_isn":`...)
		dst = strconv.AppendUint(dst, uint64(c.PeerISN), 10)
	}
	if c.Partial {
		dst = append(dst, `,"partial":true`...)
	}
	dst = append(dst, ',')
	dst = f.where.append(dst, c.NetNS, c.CgroupID)
	if f.pods != nil {
		dst = appendIdentityJSON(dst, f.pods.Lookup(c.Pid, c.CgroupID, c.Time))
	}
	return append(dst, "}\n"...)
}

type lifeTable struct{ clock clock }

func (*lifeTable) Header() []byte {
	var h header
	h.col("TIME", widthTime, false)
	h.col("PID", widthPid, true)
	h.col("COMM", widthComm, false)
	h.col("LADDR:LPORT", widthAddr, false)
	h.col("RADDR:RPORT", widthAddr, false)
	h.col("MS", widthDur, true)
	h.col("TX", widthBytes, true)
	h.col("RX", widthBytes, true)
	h.col("PATH", 0, false)
	return append(h, '\n')
}

func (f *lifeTable) Append(dst []byte, c *conn.Connection) []byte {
	start := len(dst)
	dst = f.clock.append(dst, c.Time)
	dst = padRight(dst, start, widthTime)
	dst = append(dst, ' ')
	dst = appendOwner(dst, c.Pid, c.Comm)
	dst = appendEndpoints(dst, widthAddr, c.LAddr, c.LPort, c.RAddr, c.RPort)
	start = len(dst)
	dst = appendMillis(dst, c.Duration)
	dst = padLeft(dst, start, widthDur)
	for _, v := range [...]uint64{c.TxBytes, c.RxBytes} {
		dst = append(dst, ' ')
		start = len(dst)
		dst = strconv.AppendUint(dst, v, 10)
		dst = padLeft(dst, start, widthBytes)
	}
	dst = append(dst, ' ')
	for i, st := range c.Path {
		if i > 0 {
			dst = append(dst, '>')
		}
		dst = appendState(dst, st.State)
	}
	if c.Reset != 0 || c.Error != 0 {
		dst = append(dst, " ("...)
		dst = appendEndWords(dst, "reset", c.Reset, c.ResetReason, c.Error)
		dst = append(dst, ')')
	}
	return append(dst, '\n')
}
