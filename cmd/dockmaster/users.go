package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// accessClient talks to the dockmaster API with an API key from
// DOCKMASTER_URL, DOCKMASTER_ACCESS_KEY and DOCKMASTER_SECRET_KEY. It is
// private to the user/key/member commands until the shared client exists.
type accessClient struct {
	base, access, secret string
	http                 *http.Client
}

func newAccessClient() (*accessClient, error) {
	c := &accessClient{base: strings.TrimRight(envOr("http://127.0.0.1:8080", "DOCKMASTER_URL"), "/"),
		access: envOr("", "DOCKMASTER_ACCESS_KEY"), secret: envOr("", "DOCKMASTER_SECRET_KEY"),
		http: &http.Client{Timeout: 30 * time.Second}}
	if c.access == "" || c.secret == "" {
		return nil, usagef("set DOCKMASTER_ACCESS_KEY and DOCKMASTER_SECRET_KEY (an account key of an admin or owner)")
	}
	return c, nil
}

// do sends body as JSON and decodes a 2xx answer into out; other answers
// become errors carrying the server's message.
func (c *accessClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.access, c.secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

func runUser(args []string, stdout, stderr io.Writer) error {
	return runUserWith(args, os.Stdin, stdout, stderr)
}

func runUserWith(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usagef("usage: dockmaster user create NAME [--admin] [--password-stdin]")
	}
	fs := newFlags("user create", "user create NAME [--admin] [--password-stdin]", stderr)
	admin := fs.Bool("admin", false, "make the user a global admin")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin (else one is generated and printed once)")
	if err := parseFlags(fs, interleave(args[1:])); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("user create: want exactly one NAME")
	}
	name := fs.Arg(0)
	var pw string
	generated := false
	if *fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return usagef("--password-stdin: stdin is empty")
		}
	} else {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		pw, generated = base64.RawURLEncoding.EncodeToString(b), true
	}
	c, err := newAccessClient()
	if err != nil {
		return err
	}
	if err := c.do(http.MethodPost, "/api/v1/users", map[string]any{"name": name, "password": pw, "admin": *admin}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created user %s\n", name)
	if generated {
		fmt.Fprintf(stdout, "password: %s\n(shown once; it is stored only as a bcrypt hash)\n", pw)
	}
	return nil
}

func runKey(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usagef("usage: dockmaster key create (--env ENV [--role ROLE] | --account) [--description TEXT]")
	}
	fs := newFlags("key create", "key create (--env ENV [--role ROLE] | --account) [--description TEXT]", stderr)
	env := fs.String("env", "", "create an environment key, acting only on ENV")
	role := fs.String("role", "member", "role of an environment key: owner, member, read-only, restricted")
	account := fs.Bool("account", false, "create an account key, acting as you")
	desc := fs.String("description", "", "what the key is for (e.g. jenkins)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if (*env == "") == !*account {
		return usagef("key create: give exactly one of --env ENV and --account")
	}
	c, err := newAccessClient()
	if err != nil {
		return err
	}
	var out struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	path, body := "/api/v1/keys", map[string]any{"description": *desc}
	if *env != "" {
		path, body["role"] = "/api/v1/environments/"+url.PathEscape(*env)+"/keys", *role
	}
	if err := c.do(http.MethodPost, path, body, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "access key: %s\nsecret key: %s\n(the secret is shown once; it is stored only as a hash)\n", out.AccessKey, out.Secret)
	return nil
}

func runMember(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove") {
		return usagef("usage: dockmaster member add --env ENV --user NAME --role ROLE | member remove --env ENV --user NAME")
	}
	fs := newFlags("member "+args[0], "member add --env ENV --user NAME --role ROLE", stderr)
	env := fs.String("env", "", "environment")
	user := fs.String("user", "", "user name")
	role := fs.String("role", "", "owner, member, read-only or restricted")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *env == "" || *user == "" || (args[0] == "add" && *role == "") {
		return usagef("member %s: --env, --user and (for add) --role are required", args[0])
	}
	c, err := newAccessClient()
	if err != nil {
		return err
	}
	path := "/api/v1/environments/" + url.PathEscape(*env) + "/members/" + url.PathEscape(*user)
	if args[0] == "remove" {
		if err := c.do(http.MethodDelete, path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s from %s\n", *user, *env)
		return nil
	}
	if err := c.do(http.MethodPut, path, map[string]string{"role": *role}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is %s on %s\n", *user, *role, *env)
	return nil
}

// interleave moves flags before positional arguments, so "user create
// bob --admin" works as well as "user create --admin bob".
func interleave(args []string) []string {
	var flags, pos []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
		} else {
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}
