package containerd

import "context"

// Hooks for the external tests in containerd_test.

// WorkerImage ensures the worker image and reports its name and whether it
// had to be imported.
func (d *Driver) WorkerImage(ctx context.Context) (name string, imported bool, err error) {
	cli, s, err := d.engine()
	if err != nil {
		return "", false, err
	}
	img, imported, err := d.workerImage(ctx, cli, s)
	if err != nil {
		return "", false, err
	}
	return img.Name(), imported, nil
}

// ContainerID is the container of worker id.
func ContainerID(id string) string { return containerID(id) }
