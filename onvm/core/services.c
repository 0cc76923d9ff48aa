/* services.c: the service table (service ID -> live instances).  Written
 * only by the manager's control loop; read by the RX/TX threads. */
#include "onvm_core.h"

int services_add(uint16_t service, uint16_t slot)
{
	if (service == 0 || service >= ONVM_MAX_SERVICES)
		return -EINVAL;
	struct onvm_service *s = &onvm_mgr.shm->services[service];
	if (s->count >= ONVM_MAX_INSTANCES)
		return -ENOSPC;
	s->slots[s->count] = slot;
	__atomic_store_n(&s->count, s->count + 1, __ATOMIC_RELEASE);
	return 0;
}

/* Remove an instance, keeping the others in order so each surviving
 * replica keeps as many of its flows as the new count allows. */
void services_remove(uint16_t service, uint16_t slot)
{
	if (service == 0 || service >= ONVM_MAX_SERVICES)
		return;
	struct onvm_service *s = &onvm_mgr.shm->services[service];
	uint16_t n = s->count, j = 0;
	uint16_t kept[ONVM_MAX_INSTANCES];
	for (uint16_t i = 0; i < n; i++)
		if (s->slots[i] != slot)
			kept[j++] = s->slots[i];
	if (j == n)
		return;
	/* Shrink first: readers then never index past the live entries. */
	__atomic_store_n(&s->count, 0, __ATOMIC_RELEASE);
	for (uint16_t i = 0; i < j; i++)
		s->slots[i] = kept[i];
	__atomic_store_n(&s->count, j, __ATOMIC_RELEASE);
}
