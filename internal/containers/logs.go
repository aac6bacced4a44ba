package containers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// LogOptions choose the lines.
type LogOptions struct {
	// Tail is the number of last lines per container (0: all).
	Tail   int
	Follow bool
	Since  time.Time
}

// LogLine is one line of a container's output. Stream is stdout, stderr,
// or "error" when reading the stream failed (Text says why).
type LogLine struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Container string    `json:"container"`
	Stream    string    `json:"stream"`
	Text      string    `json:"text"`
}

// Logs streams the output of cs (one container, or every container of a
// service across hosts) into one channel, closed when every stream ends
// or ctx is done. Lines of different containers interleave as they come.
func (s *Service) Logs(ctx context.Context, cs []Container, o LogOptions) (<-chan LogLine, error) {
	if len(cs) == 0 {
		return nil, fmt.Errorf("logs: %w", ErrNotFound)
	}
	type open struct {
		c   Container
		rc  io.ReadCloser
		tty bool
	}
	var opened []open
	closeAll := func() {
		for _, x := range opened {
			x.rc.Close()
		}
	}
	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: o.Follow}
	if o.Tail > 0 {
		lo.Tail = strconv.Itoa(o.Tail)
	}
	if !o.Since.IsZero() {
		lo.Since = o.Since.Format(time.RFC3339Nano)
	}
	for _, c := range cs {
		w, err := s.client(c)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("logs %s: %w", c.Ref(), err)
		}
		ictx, cancel := context.WithTimeout(ctx, s.o.Timeout)
		ins, err := w.cli.ContainerInspect(ictx, c.ID)
		cancel()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("logs %s: %w", c.Ref(), wrapDocker(err))
		}
		// The stream lives as long as ctx: no per-call timeout here.
		rc, err := w.cli.ContainerLogs(ctx, c.ID, lo)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("logs %s: %w", c.Ref(), wrapDocker(err))
		}
		opened = append(opened, open{c: c, rc: rc, tty: ins.Config != nil && ins.Config.Tty})
	}
	out := make(chan LogLine, 64)
	var wg sync.WaitGroup
	for _, x := range opened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer x.rc.Close()
			streamLines(ctx, x.c, x.rc, x.tty, out)
		}()
	}
	go func() {
		<-ctx.Done()
		closeAll() // unblocks readers of followed streams
	}()
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// streamLines splits Docker's stdcopy framing (raw output for a TTY
// container, where everything is stdout) into timestamped lines.
func streamLines(ctx context.Context, c Container, rc io.Reader, tty bool, out chan<- LogLine) {
	send := func(l LogLine) bool {
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	scan := func(stream string, r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			l := LogLine{Host: c.Host, Container: c.Name, Stream: stream, Text: strings.TrimSuffix(sc.Text(), "\r")}
			if ts, rest, ok := strings.Cut(l.Text, " "); ok {
				if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
					l.Time, l.Text = t, rest
				}
			}
			if !send(l) {
				return
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			send(LogLine{Time: time.Now(), Host: c.Host, Container: c.Name, Stream: "error", Text: err.Error()})
		}
	}
	if tty {
		scan("stdout", rc)
		return
	}
	or, ow := io.Pipe()
	er, ew := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(ow, ew, rc)
		ow.CloseWithError(err)
		ew.CloseWithError(err)
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer or.Close(); scan("stdout", or) }()
	go func() { defer wg.Done(); defer er.Close(); scan("stderr", er) }()
	wg.Wait()
}
