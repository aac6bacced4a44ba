package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

func runUser(args []string, stdout, stderr io.Writer) error {
	return runUserWith(args, os.Stdin, stdout, stderr)
}

func runUserWith(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usagef("usage: dockmaster user create NAME [--admin] [--password-stdin]")
	}
	fs := newFlags("user create", "user create NAME [--admin] [--password-stdin]", stderr)
	cf := addClientFlags(fs)
	admin := fs.Bool("admin", false, "make the user a global admin")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin (else one is generated and printed once)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("user create: want exactly one NAME")
	}
	name := pos[0]
	var pw string
	generated := false
	if *fromStdin {
		if pw, err = readPassword(stdin); err != nil {
			return err
		}
	} else {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		pw, generated = base64.RawURLEncoding.EncodeToString(b), true
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := c.post(context.Background(), "/api/v1/users", map[string]any{"name": name, "password": pw, "admin": *admin}, nil); err != nil {
		return err
	}
	if cf.wantJSON() {
		out := map[string]string{"name": name}
		if generated {
			out["password"] = pw
		}
		return writeJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "created user %s\n", name)
	if generated {
		fmt.Fprintf(stdout, "password: %s\n(shown once; it is stored only as a bcrypt hash)\n", pw)
	}
	return nil
}

func runKey(args []string, stdout, stderr io.Writer) error {
	return runKeyWith(args, os.Stdin, stdout, stderr)
}

const keySynopsis = "key create (--env ENV [--role ROLE] | --account) [--description TEXT] [--user NAME --password-stdin]"

// runKeyWith is "key create". With --user it signs in with that user's
// password (as the login page does) instead of an API key: how the first
// key is made, e.g. from the initial admin password.
func runKeyWith(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usagef("usage: dockmaster %s", keySynopsis)
	}
	fs := newFlags("key create", keySynopsis, stderr)
	cf := addClientFlags(fs)
	env := fs.String("env", "", "create an environment key, acting only on ENV")
	role := fs.String("role", "member", "role of an environment key: owner, member, read-only, restricted")
	account := fs.Bool("account", false, "create an account key, acting as you")
	desc := fs.String("description", "", "what the key is for (e.g. jenkins)")
	user := fs.String("user", "", "sign in as this user instead of using an API key (with --password-stdin)")
	fromStdin := fs.Bool("password-stdin", false, "with --user: read the password from the first line of stdin")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if (*env == "") == !*account {
		return usagef("key create: give exactly one of --env ENV and --account")
	}
	if (*user != "") != *fromStdin {
		return usagef("key create: --user and --password-stdin go together")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if *user != "" {
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		logout, err := c.login(ctx, *user, pw)
		if err != nil {
			return err
		}
		defer logout()
	}
	var out struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	path, body := "/api/v1/keys", map[string]any{"description": *desc}
	if *env != "" {
		path, body["role"] = "/api/v1/environments/"+url.PathEscape(*env)+"/keys", *role
	}
	if err := c.post(ctx, path, body, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "access key: %s\nsecret key: %s\n(the secret is shown once; it is stored only as a hash)\n", out.AccessKey, out.Secret)
	return nil
}

func runMember(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove") {
		return usagef("usage: dockmaster member add --env ENV --user NAME --role ROLE | member remove --env ENV --user NAME")
	}
	fs := newFlags("member "+args[0], "member add --env ENV --user NAME --role ROLE", stderr)
	cf := addClientFlags(fs)
	env := fs.String("env", "", "environment")
	user := fs.String("user", "", "user name")
	role := fs.String("role", "", "owner, member, read-only or restricted")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *env == "" || *user == "" || (args[0] == "add" && *role == "") {
		return usagef("member %s: --env, --user and (for add) --role are required", args[0])
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	path := "/api/v1/environments/" + url.PathEscape(*env) + "/members/" + url.PathEscape(*user)
	if args[0] == "remove" {
		if err := c.do(ctx, http.MethodDelete, path, nil, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s from %s\n", *user, *env)
		return nil
	}
	if err := c.do(ctx, http.MethodPut, path, nil, map[string]string{"role": *role}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is %s on %s\n", *user, *role, *env)
	return nil
}

// readPassword reads a password from the first line of stdin.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usagef("--password-stdin: stdin is empty")
	}
	return pw, nil
}
