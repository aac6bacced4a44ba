package containers

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// ExecOptions describe a process to run in a container.
type ExecOptions struct {
	Cmd []string
	// Tty allocates a terminal: output is one raw stream and Resize works.
	Tty bool
	// Stdin attaches the process's standard input to Write.
	Stdin      bool
	Rows, Cols uint
	User       string
	WorkingDir string
}

// ExecSession is one running exec, attached. Write sends input (when
// Stdin), Output copies output until the process ends; Close ends it.
// Write and Output may be used from different goroutines.
type ExecSession struct {
	ID        string
	Container Container
	Started   time.Time
	tty       bool
	hj        types.HijackedResponse
	cli       Docker
	timeout   time.Duration
}

// Exec starts cmd in c and attaches to it.
func (s *Service) Exec(ctx context.Context, c Container, o ExecOptions) (*ExecSession, error) {
	if len(o.Cmd) == 0 {
		return nil, fmt.Errorf("exec %s: empty command", c.Ref())
	}
	w, err := s.client(c)
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", c.Ref(), err)
	}
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	eo := container.ExecOptions{Cmd: o.Cmd, Tty: o.Tty, AttachStdin: o.Stdin, AttachStdout: true, AttachStderr: true,
		User: o.User, WorkingDir: o.WorkingDir}
	if o.Tty && o.Rows > 0 && o.Cols > 0 {
		eo.ConsoleSize = &[2]uint{o.Rows, o.Cols}
	}
	cr, err := w.cli.ContainerExecCreate(cctx, c.ID, eo)
	if err != nil {
		return nil, fmt.Errorf("exec %s: create: %w", c.Ref(), wrapDocker(err))
	}
	// The attachment outlives this call: it uses the caller's ctx only.
	hj, err := w.cli.ContainerExecAttach(ctx, cr.ID, container.ExecAttachOptions{Tty: o.Tty, ConsoleSize: eo.ConsoleSize})
	if err != nil {
		return nil, fmt.Errorf("exec %s: attach: %w", c.Ref(), wrapDocker(err))
	}
	return &ExecSession{ID: cr.ID, Container: c, Started: time.Now(), tty: o.Tty, hj: hj, cli: w.cli, timeout: s.o.Timeout}, nil
}

// Write sends input to the process.
func (e *ExecSession) Write(p []byte) (int, error) { return e.hj.Conn.Write(p) }

// CloseInput signals end of input (the process reads EOF).
func (e *ExecSession) CloseInput() error { return e.hj.CloseWrite() }

// Output copies the process's output until it ends; without a TTY stdout
// and stderr are separated, with one both go to stdout.
func (e *ExecSession) Output(stdout, stderr io.Writer) error {
	var err error
	if e.tty {
		_, err = io.Copy(stdout, e.hj.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, e.hj.Reader)
	}
	return err
}

// Resize sets the terminal size of a TTY exec.
func (e *ExecSession) Resize(ctx context.Context, rows, cols uint) error {
	if !e.tty || rows == 0 || cols == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	return e.cli.ContainerExecResize(cctx, e.ID, container.ResizeOptions{Height: rows, Width: cols})
}

// ExitCode waits briefly for the process to be reported ended (Docker
// marks it a moment after its output closes) and returns its exit code;
// -1 when it is still running.
func (e *ExecSession) ExitCode(ctx context.Context) (int, error) {
	deadline := time.Now().Add(e.timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, e.timeout)
		ins, err := e.cli.ContainerExecInspect(cctx, e.ID)
		cancel()
		if err != nil {
			return -1, fmt.Errorf("exec %s: inspect: %w", e.ID, err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return -1, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close drops the attachment; a shell whose terminal goes away exits.
func (e *ExecSession) Close() error {
	e.hj.Close()
	return nil
}
