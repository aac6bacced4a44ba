package main

import (
	"fmt"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/jenkins"
)

// deployJenkins is the Jenkins client that triggers environments'
// deploys.environments.*.jenkins_job, with the pipeline's Jenkins login;
// nil when no Jenkins is configured (such jobs are then refused per ticket).
func deployJenkins(cfg *config.Config) (pipeline.Jenkins, error) {
	jc := cfg.Pipeline.Jenkins
	if jc.URL == "" {
		return nil, nil
	}
	token, err := jc.Token.Value()
	if err != nil {
		return nil, usageError{fmt.Errorf("pipeline.jenkins.token: %w", err)}
	}
	c, err := jenkins.New(jc.URL, jc.User, token)
	if err != nil {
		return nil, usageError{fmt.Errorf("pipeline.jenkins.url: %w", err)}
	}
	return c, nil
}
