// Package jenkinsscripts holds the shell scripts the dockmaster
// Jenkinsfiles call (report.sh, build.sh, deploy.sh). `dockmaster jenkins
// init` writes them beside the Jenkinsfiles; they run without Jenkins too,
// which is how test/jenkins_kit_test.go checks them.
package jenkinsscripts

import "embed"

// FS holds the *.sh files.
//
//go:embed *.sh
var FS embed.FS
