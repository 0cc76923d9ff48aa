/* stats.c: the control file that holds stats and the shared tables; the
 * manager creates it, NFs and notebooks map it. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "onvm_core.h"

/* Map an open control file (and close the descriptor). */
static struct onvm_shm *map_control_file(int fd, const char *path)
{
	void *p = mmap(NULL, sizeof(struct onvm_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		onvm_set_error("cannot map %s: %s", path, strerror(errno));
		return NULL;
	}
	return p;
}

struct onvm_shm *shm_create(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		onvm_set_error("cannot create %s: %s", path, strerror(errno));
		return NULL;
	}
	if (ftruncate(fd, sizeof(struct onvm_shm)) < 0) {
		onvm_set_error("cannot size %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct onvm_shm *shm = map_control_file(fd, path);
	if (shm == NULL)
		return NULL;
	memset(shm, 0, sizeof(*shm));
	shm->magic = ONVM_SHM_MAGIC;
	shm->version = ONVM_SHM_VERSION;
	return shm;
}

struct onvm_shm *shm_attach(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		onvm_set_error("no manager at %s (%s): is the manager running?", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(struct onvm_shm)) {
		onvm_set_error("%s is not a control file of this onvm version", path);
		close(fd);
		errno = EPROTO;
		return NULL;
	}
	struct onvm_shm *shm = map_control_file(fd, path);
	if (shm == NULL)
		return NULL;
	if (shm->magic != ONVM_SHM_MAGIC || shm->version != ONVM_SHM_VERSION ||
	    !__atomic_load_n(&shm->ready, __ATOMIC_ACQUIRE)) {
		onvm_set_error("the manager at %s is not ready (or of another version)", path);
		munmap(shm, sizeof(struct onvm_shm));
		errno = EAGAIN;
		return NULL;
	}
	return shm;
}

/* Called by the control tick: values that cost too much on the hot path. */
void stats_update(void)
{
	onvm_mgr.shm->pool_in_use = rte_mempool_in_use_count(onvm_mgr.pool);
}
