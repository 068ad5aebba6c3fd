//go:build linux

package e2e

import (
	"testing"

	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

func TestMain(m *testing.M) { node.Main(m) }
